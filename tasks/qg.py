"""Question generation in the style of SQuAD (answer-aware QG).

Input: ``answer: <span> context: <passage>`` where the passage is 3-5 sentences of facts
about one invented person (birth, studies, moves, positions, inventions or discoveries,
foundations, awards, death) in a synthetic world of invented names, cities and
institutions, and the span occurs verbatim in the passage. The passage wording (sentence
templates, pronoun/surname reference) is part of the record, so it belongs to the input.
Output: a question whose answer is exactly the span.

The task is one-to-many like real QG: the same fact can be asked about with different
wh-forms ("When did X invent Y?" / "In what year was Y invented?"), active or passive
voice, with or without extra context ("... in 1887?"), and with the full name or the
surname. Every question is about the fact that contains the answer, and the passage holds
only one fact of each kind, so every question has exactly the given answer.
"""
from __future__ import annotations

import random
from typing import Any

from tasks.builtin import BuiltinTask

# ----------------------------------------------------------------------------- world

MALE = ("Anton", "Elric", "Tomas", "Viktor", "Milo", "Oskar", "Lucan", "Pavel", "Aurel",
        "Dorian", "Felix", "Ivo", "Kasimir", "Leon", "Matteo", "Emil", "Janek", "Rurik")
FEMALE = ("Alma", "Clara", "Elena", "Ines", "Irina", "Lena", "Liora", "Mira", "Nadia",
          "Petra", "Sofia", "Talia", "Vera", "Yara", "Zora", "Greta", "Hedda", "Ottilie")
SURNAMES = ("Varenko", "Holmqvist", "Delacourt", "Marlov", "Brandt", "Kessler", "Orlin",
            "Vasquez", "Lindqvist", "Morrow", "Halden", "Castellan", "Novak", "Reinholt",
            "Szabo", "Ferrand", "Adeyemi", "Okonkwo", "Tamura", "Haskell", "Ivanek",
            "Lowell", "Marchetti", "Pruitt", "Quillan", "Rasmussen", "Sorel", "Thorne",
            "Ulbrecht", "Valdez", "Wexler", "Yardley", "Zelenko", "Achterberg", "Borowski",
            "Corvin", "Dalca", "Esterhaz", "Falk", "Gillard")
CITIES = ("Varnholt", "Lorvika", "Dunmere", "Brenmoor", "Ostrell", "Caldris", "Westmark",
          "Kelvara", "Rondheim", "Saltcombe", "Tirana Vale", "Ambergate", "Norvik", "Estrava",
          "Halvern", "Pellridge", "Marisol", "Thornbury", "Quellin", "Zaravan", "Fennick",
          "Isolde Bay", "Gravesport", "Lindhaven", "Corvale", "Stellmark", "Ardlow", "Mirren")
# field, person noun, capitalised form for organisation names
FIELDS = (
    ("physics", "physicist", "Physics"), ("chemistry", "chemist", "Chemistry"),
    ("mathematics", "mathematician", "Mathematics"), ("astronomy", "astronomer", "Astronomy"),
    ("biology", "biologist", "Biology"), ("medicine", "physician", "Medicine"),
    ("geology", "geologist", "Geology"), ("engineering", "engineer", "Engineering"),
    ("botany", "botanist", "Botany"), ("economics", "economist", "Economics"),
    ("architecture", "architect", "Architecture"), ("zoology", "zoologist", "Zoology"),
)
# (pattern, takes "the") ; {c} = a city
INSTITUTIONS = (
    ("University of {c}", True), ("{c} Institute of Technology", True),
    ("{c} Polytechnic", False), ("{c} Academy of Sciences", True),
    ("Royal College of {c}", True), ("{c} State University", False),
    ("Free University of {c}", True), ("{c} Technical College", False),
)
ROLES = ("professor", "lecturer", "researcher", "fellow")
# {s} = the person's surname, {f} = a capitalised field
ORGS = ("Society for {f} Research", "Royal {f} Society", "{s} Institute",
        "{s} Institute of {f}", "National {f} Laboratory", "Free School of {f}",
        "{f} Guild", "{s} Foundation")
AWARDS = ("{s} Medal", "{s} Prize", "{s} Award", "Gold Medal of {c}", "{c} Prize")
DEVICE_ADJS = ("rotary", "electric", "steam", "portable", "magnetic", "hydraulic", "solar",
               "pneumatic", "optical", "thermal", "mechanical", "acoustic")
DEVICE_NOUNS = ("engine", "telescope", "pump", "loom", "compass", "lamp", "clock", "camera",
                "battery", "microscope", "furnace", "press", "turbine", "valve", "telegraph")
DISC_ADJS = ("thermal", "magnetic", "optical", "chemical", "electric", "acoustic", "genetic",
             "lunar", "solar", "atomic", "cellular", "tidal")
DISC_NOUNS = ("effect", "principle", "law", "cycle", "reaction", "constant")
# verb: (base, past, past participle, gerund)
VERBS = {
    "invent": ("invent", "invented", "invented", "inventing"),
    "design": ("design", "designed", "designed", "designing"),
    "build": ("build", "built", "built", "building"),
    "discover": ("discover", "discovered", "discovered", "discovering"),
}

# Chronological order of facts in a passage, with year offsets from birth.
FACT_ORDER = ("birth", "study", "move", "join", "make", "found", "award", "death")
YEAR_OFFSET = {"move": (18, 24), "join": (25, 32), "make": (33, 42), "found": (43, 50),
               "award": (51, 58), "death": (60, 85)}
# Which answer types each fact offers.
SLOTS = {
    "birth": ("year", "city", "person"),
    "study": ("field", "institution", "mentor"),
    "move": ("year", "city"),
    "join": ("year", "institution"),
    "make": ("year", "thing", "person"),
    "found": ("year", "city", "institution", "person"),
    "award": ("year", "award"),
    "death": ("year", "city"),
}
ANSWER_TYPES = ("year", "city", "person", "institution", "field", "thing", "award")

# ----------------------------------------------------------------------------- passage
# Sentence templates per fact. {S} = subject reference (full name / pronoun / surname),
# {P} = full name, {pos} = his/her; {I}/{O}/{T}/{A} already include "the" where needed.

PASSAGE = {
    "birth": (
        "{P} was born in {C} in {Y}.",
        "{P} was born in {Y} in the city of {C}.",
        "{P} was {a_role} who was born in {C} in {Y}.",
        "Born in {C} in {Y}, {P} became a well-known {role}.",
    ),
    "study": (
        "{S} studied {F} at {I}.",
        "At {I}, {s} studied {F}.",
        "{S} later studied {F} at {I}.",
    ),
    "study_mentor": (
        "{S} studied {F} at {I} under {M}.",
        "At {I}, {s} studied {F} under {M}.",
        "{S} studied {F} at {I}, where {pron} was taught by {M}.",
    ),
    "move": (
        "In {Y}, {s} moved to {C}.",
        "{S} moved to {C} in {Y}.",
    ),
    "join": (
        "In {Y}, {s} joined {I} as a {role2}.",
        "{S} became a {role2} at {I} in {Y}.",
        "{S} joined {I} as a {role2} in {Y}.",
    ),
    "make": (
        "In {Y}, {s} {past} {T}.",
        "{S} {past} {T} in {Y}.",
        "{T_cap} was {pp} by {P} in {Y}.",
    ),
    "found": (
        "In {Y}, {s} founded {O} in {C}.",
        "{S} founded {O} in {C} in {Y}.",
        "{O_cap} was founded by {P} in {C} in {Y}.",
        "{S} established {O} in {C} in {Y}.",
    ),
    "award": (
        "In {Y}, {s} received {A}.",
        "{S} was awarded {A} in {Y}.",
        "{S} received {A} in {Y} for {pos} work in {F}.",
    ),
    "death": (
        "{S} died in {C} in {Y}.",
        "{S} died in {Y} in {C}.",
        "{S} died in {C} in {Y} at the age of {age}.",
    ),
}

# ----------------------------------------------------------------------------- questions
# {N} = the person as named in the question (full name or surname).

QUESTIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("birth", "year"): (
        "When was {N} born?", "In what year was {N} born?", "In which year was {N} born?",
        "What year was {N} born in?", "In what year was {N} born in {C}?",
        "When was {N} born in {C}?",
    ),
    ("birth", "city"): (
        "Where was {N} born?", "In which city was {N} born?", "In what city was {N} born?",
        "What city was {N} born in?", "Where was {N} born in {Y}?",
        "Which city is {N} from?",
    ),
    ("birth", "person"): (
        "Who was born in {C} in {Y}?", "Which {role} was born in {C}?",
        "Which {role} was born in {Y}?", "Who was born in {Y} in {C}?",
        "Which {role} was born in {C} in {Y}?",
    ),
    ("study", "field"): (
        "What did {N} study at {I}?", "What subject did {N} study at {I}?",
        "What did {N} study?", "Which subject did {N} study?",
        "What field did {N} study at {I}?",
    ),
    ("study", "institution"): (
        "Where did {N} study {F}?", "Where did {N} study?",
        "At which institution did {N} study {F}?", "Which institution did {N} attend?",
        "At what institution did {N} study?",
    ),
    ("study", "mentor"): (
        "Under whom did {N} study {F}?", "Who taught {N} {F} at {I}?",
        "Who did {N} study under at {I}?", "Who did {N} study {F} under?",
        "Under whom did {N} study at {I}?", "Who was the teacher of {N} at {I}?",
    ),
    ("move", "year"): (
        "When did {N} move to {C}?", "In what year did {N} move to {C}?",
        "In which year did {N} relocate to {C}?", "What year did {N} move to {C}?",
        "When did {N} relocate to {C}?",
    ),
    ("move", "city"): (
        "Where did {N} move in {Y}?", "To which city did {N} move in {Y}?",
        "Which city did {N} move to in {Y}?", "What city did {N} relocate to in {Y}?",
        "Where did {N} move to in {Y}?",
    ),
    ("join", "year"): (
        "When did {N} join {I}?", "In what year did {N} join {I}?",
        "In which year did {N} become a {role2} at {I}?", "What year did {N} join {I}?",
        "When did {N} become a {role2} at {I}?",
    ),
    ("join", "institution"): (
        "Which institution did {N} join in {Y}?", "Where did {N} become a {role2} in {Y}?",
        "Where did {N} work as a {role2}?", "What institution did {N} join as a {role2}?",
        "Which institution did {N} join as a {role2}?", "Where did {N} become a {role2}?",
    ),
    ("make", "year"): (
        "When did {N} {base} {T}?", "In what year did {N} {base} {T}?",
        "In which year was {T} {pp}?", "What year was {T} {pp} by {N}?",
        "When was {T} {pp}?", "In what year was {T} {pp}?",
    ),
    ("make", "thing"): (
        "What did {N} {base} in {Y}?", "What did {N} {base}?", "What was {pp} by {N}?",
        "What was {pp} by {N} in {Y}?", "{which} did {N} {base} in {Y}?",
        "{which} did {N} {base}?",
    ),
    ("make", "person"): (
        "Who {past} {T}?", "Who {past} {T} in {Y}?", "By whom was {T} {pp}?",
        "Which {role} {past} {T}?", "Who is credited with {ger} {T}?",
    ),
    ("found", "year"): (
        "When was {O} founded?", "In what year did {N} found {O}?",
        "When did {N} establish {O}?", "In which year was {O} founded?",
        "What year was {O} established?", "When did {N} found {O} in {C}?",
    ),
    ("found", "city"): (
        "Where did {N} found {O}?", "In which city was {O} founded?",
        "Where was {O} founded?", "In what city did {N} establish {O}?",
        "Where was {O} established?",
    ),
    ("found", "institution"): (
        "What did {N} found in {Y}?", "Which organisation did {N} found in {C}?",
        "What organization did {N} establish in {Y}?", "What did {N} found in {C}?",
        "What was founded by {N} in {Y}?", "What did {N} establish in {C} in {Y}?",
    ),
    ("found", "person"): (
        "Who founded {O}?", "Who established {O}?", "By whom was {O} founded?",
        "Who founded {O} in {C}?", "Which {role} founded {O}?",
    ),
    ("award", "year"): (
        "When did {N} receive {A}?", "In what year was {N} awarded {A}?",
        "In which year did {N} win {A}?", "What year did {N} receive {A}?",
        "When was {N} awarded {A}?",
    ),
    ("award", "award"): (
        "What award did {N} receive in {Y}?", "Which prize did {N} win in {Y}?",
        "What honour was {N} given in {Y}?", "What did {N} receive in {Y}?",
        "Which award was given to {N} in {Y}?", "What was {N} awarded in {Y}?",
    ),
    ("death", "year"): (
        "When did {N} die?", "In what year did {N} die?", "In which year did {N} die?",
        "What year did {N} die in?", "When did {N} die in {C}?",
    ),
    ("death", "city"): (
        "Where did {N} die?", "In which city did {N} die?", "In what city did {N} die?",
        "Where did {N} die in {Y}?", "What city did {N} die in?",
    ),
}


def _the(name: str, article: bool) -> str:
    return f"the {name}" if article else name


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


class Generator:
    name = "qg"
    version = "1"

    # -- records -----------------------------------------------------------------------

    def sample_record(self, rng: random.Random) -> dict[str, Any]:
        answer_type = rng.choice(ANSWER_TYPES)
        kind_slot = [(k, s) for k, slots in SLOTS.items() for s in slots
                     if (s == "mentor" and answer_type == "person") or s == answer_type]
        kind, slot = rng.choice(kind_slot)

        female = rng.random() < 0.5
        first = rng.choice(FEMALE if female else MALE)
        surnames = rng.sample(SURNAMES, 3)  # person, mentor, award
        cities = rng.sample(CITIES, 7)  # 4 for facts, 3 for institution/award names
        field, role, field_cap = rng.choice(FIELDS)
        birth = rng.randint(1790, 1880)

        n_facts = rng.randint(2, 4)
        others = [k for k in FACT_ORDER[1:] if k != kind]
        chosen = set(rng.sample(others, n_facts - (kind != "birth")))
        chosen |= {"birth", kind}
        kinds = [k for k in FACT_ORDER if k in chosen]

        person = {"first": first, "last": surnames[0], "full": f"{first} {surnames[0]}",
                  "female": female, "role": role, "field": field}
        facts: list[dict[str, Any]] = []
        city_i = 0
        inst_cities = iter(cities[4:])
        for k in kinds:
            d: dict[str, Any] = {"kind": k}
            if k in YEAR_OFFSET:
                lo, hi = YEAR_OFFSET[k]
                d["Y"] = str(birth + rng.randint(lo, hi))
            if k == "birth":
                d["Y"] = str(birth)
            if k in ("birth", "move", "found", "death"):
                d["C"] = cities[city_i]
                city_i += 1
            if k in ("study", "join"):
                pattern, article = rng.choice(INSTITUTIONS)
                d["inst"] = pattern.format(c=next(inst_cities))
                d["article"] = article
                d["F"] = field
            if k == "study":
                mentor = slot == "mentor" if kind == "study" else rng.random() < 0.4
                if mentor:
                    d["M"] = f"{rng.choice(MALE + FEMALE)} {surnames[1]}"
            if k == "join":
                d["role2"] = rng.choice(ROLES)
            if k == "make":
                if rng.random() < 0.35:
                    d["verb"] = "discover"
                    d["thing"] = f"{rng.choice(DISC_ADJS)} {rng.choice(DISC_NOUNS)}"
                else:
                    d["verb"] = rng.choice(("invent", "invent", "design", "build"))
                    d["thing"] = f"{rng.choice(DEVICE_ADJS)} {rng.choice(DEVICE_NOUNS)}"
            if k == "found":
                d["org"] = rng.choice(ORGS).format(s=surnames[0], f=field_cap)
            if k == "award":
                d["award"] = rng.choice(AWARDS).format(s=surnames[2], c=next(inst_cities))
                d["F"] = field
            if k == "death":
                d["age"] = str(int(d["Y"]) - birth - rng.randint(0, 1))
            pool = PASSAGE["study_mentor" if "M" in d else k]
            d["tpl"] = rng.randrange(len(pool))
            d["subj"] = rng.choice(("pron", "pron", "last", "full"))
            facts.append(d)

        fact_i = kinds.index(kind)
        record = {"person": person, "facts": facts, "fact": fact_i, "slot": slot}
        record["answer"] = self._answer(record)
        assert record["answer"] in self._passage(record)
        return record

    @staticmethod
    def _answer(record: dict[str, Any]) -> str:
        fact = record["facts"][record["fact"]]
        slot = record["slot"]
        return {
            "year": lambda: fact["Y"],
            "city": lambda: fact["C"],
            "person": lambda: record["person"]["full"],
            "mentor": lambda: fact["M"],
            "field": lambda: fact["F"],
            "thing": lambda: fact["thing"],
            "award": lambda: fact["award"],
            "institution": lambda: fact["org"] if fact["kind"] == "found" else fact["inst"],
        }[slot]()

    # -- rendering ---------------------------------------------------------------------

    @staticmethod
    def _slots(person: dict[str, Any], fact: dict[str, Any]) -> dict[str, str]:
        role = person["role"]
        v: dict[str, str] = {"P": person["full"], "role": role,
                             "a_role": ("an " if role[0] in "aeiou" else "a ") + role,
                             "pos": "her" if person["female"] else "his",
                             "pron": "she" if person["female"] else "he"}
        for key in ("Y", "C", "F", "M", "role2", "age"):
            if key in fact:
                v[key] = fact[key]
        if "inst" in fact:
            v["I"] = _the(fact["inst"], fact["article"])
        if "thing" in fact:
            base, past, pp, ger = VERBS[fact["verb"]]
            v.update(T=f"the {fact['thing']}", T_cap=f"The {fact['thing']}", base=base,
                     past=past, pp=pp, ger=ger)
            v["which"] = "Which device" if fact["verb"] != "discover" else "What"
        if "org" in fact:
            v.update(O=f"the {fact['org']}", O_cap=f"The {fact['org']}")
        if "award" in fact:
            v["A"] = f"the {fact['award']}"
        return v

    def _passage(self, record: dict[str, Any]) -> str:
        person = record["person"]
        sentences = []
        for fact in record["facts"]:
            v = self._slots(person, fact)
            ref = {"pron": v["pron"], "last": person["last"], "full": person["full"]}[fact["subj"]]
            v["S"] = _cap(ref)
            v["s"] = ref
            pool = PASSAGE["study_mentor" if "M" in fact else fact["kind"]]
            sentences.append(pool[fact["tpl"]].format(**v))
        return " ".join(sentences)

    def source(self, record: dict[str, Any]) -> str:
        return f"answer: {record['answer']} context: {self._passage(record)}"

    def realize(self, record: dict[str, Any], rng: random.Random) -> str:
        person = record["person"]
        fact = record["facts"][record["fact"]]
        v = self._slots(person, fact)
        v["N"] = rng.choice((person["full"], person["full"], person["last"]))
        template = rng.choice(QUESTIONS[(fact["kind"], record["slot"])])
        return _cap(template.format(**v))


TASK = BuiltinTask(
    name="qg",
    description=(
        "SQuAD-style answer-aware question generation over synthetic biographies "
        "(one-to-many: wh-form, voice, optional context, name reference)"
    ),
    generator=Generator(),
    max_source_tokens=112,
    max_target_tokens=32,
    metric="bleu",
)
