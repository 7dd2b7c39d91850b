"""Data-to-text in the style of the E2E NLG challenge (restaurant descriptions).

Input: an E2E meaning representation with a fixed attribute order, e.g.
``name[The Golden Goose], eatType[pub], food[French], near[Burger King]``.
Output: a fluent English description that mentions every attribute.

The task is one-to-many like E2E itself: a realization picks an attribute order, splits
the attributes into 1-3 sentences, aggregates them as prenominal adjectives,
post-modifiers ("with low prices", "near X"), relative clauses or coordinated verb
phrases, refers back by pronoun, name or "the pub", and draws one of several
lexicalizations per attribute value ("cheap" / "inexpensive" / "with low prices").
Every realization is correct and complete; only the wording varies.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from tasks.builtin import BuiltinTask

# ----------------------------------------------------------------------------- values

NAME_ADJS = (
    "Golden", "Red", "Blue", "Green", "Silver", "Black", "White", "Old", "Little",
    "Royal", "Happy", "Wild", "Lucky", "Crooked", "Jolly", "Hidden", "Rusty", "Copper",
    "Velvet", "Amber",
)
NAME_NOUNS = (
    "Goose", "Lion", "Anchor", "Dragon", "Fox", "Oak", "Crown", "Kettle", "Lantern",
    "Swan", "Harp", "Bell", "Barrel", "Mill", "Plough", "Hare", "Falcon", "Compass",
    "Teapot", "Orchard",
)
NEAR_PLACES = (
    "Burger King", "Cafe Rouge", "Cafe Brazil", "Cafe Sicilia", "The Portland Arms",
    "The Six Bells", "The Sorrento", "The Rice Boat", "Raja Indian Cuisine",
    "Yippee Noodle Bar", "All Bar One", "Avalon", "Clare Hall", "Express by Holiday Inn",
    "Crowne Plaza Hotel", "The Bakers", "Rainbow Vegetarian Cafe", "Ranch",
    "The Cambridge Blue", "Caffe Nero", "The Wrestlers", "The Punter",
)

EAT_TYPES = ("restaurant", "coffee shop", "pub")
FOODS = ("English", "French", "Italian", "Chinese", "Indian", "Japanese", "Fast food")
PRICES = ("cheap", "moderate", "high", "less than £20", "£20-25", "more than £30")
RATINGS = ("low", "average", "high", "1 out of 5", "3 out of 5", "5 out of 5")
AREAS = ("riverside", "city centre")
FAMILY = ("yes", "no")

# Fixed order of attributes in the source MR.
ATTRS = ("name", "eatType", "food", "priceRange", "customerRating", "area",
         "familyFriendly", "near")
VALUES = {
    "eatType": EAT_TYPES,
    "food": FOODS,
    "priceRange": PRICES,
    "customerRating": RATINGS,
    "area": AREAS,
    "familyFriendly": FAMILY,
    "near": NEAR_PLACES,
}
OPTIONAL = tuple(a for a in ATTRS if a != "name")
GENERIC_NOUNS = ("place", "venue", "eatery")
# Prenominal adjective order: opinion/price before origin ("a cheap French pub").
ADJ_ORDER = ("familyFriendly", "priceRange", "customerRating", "food")


@dataclass(frozen=True)
class Forms:
    """Ways to express one attribute value in different syntactic slots."""

    adj: tuple[str, ...] = ()  # prenominal: "cheap" in "a cheap pub"
    post: tuple[str, ...] = ()  # post-nominal: "with low prices", "near X"
    vp: tuple[str, ...] = ()  # verb phrase with a 3rd-person subject: "has low prices"
    front: tuple[str, ...] = ()  # fronted adverbial: "In the city centre, ..."
    alone: tuple[str, ...] = ()  # whole sentence, subject included: "Its prices are low."


def _food_forms(value: str) -> Forms:
    if value == "Fast food":
        kinds = ("fast food",)
        adj: tuple[str, ...] = ("fast food",)
    else:
        kinds = (f"{value} food", f"{value} cuisine", f"{value} dishes")
        adj = (value,)
    return Forms(
        adj=adj,
        post=tuple(f"serving {k}" for k in kinds) + tuple(f"offering {k}" for k in kinds[:1])
        + tuple(f"that serves {k}" for k in kinds[:2]),
        vp=tuple(f"serves {k}" for k in kinds) + (f"offers {kinds[0]}", f"specialises in {kinds[0]}"),
        alone=(f"It serves {kinds[0]}.", f"Its menu features {kinds[-1]}."),
    )


_PRICE = {
    "cheap": Forms(
        adj=("cheap", "inexpensive", "low-priced"),
        post=("with low prices", "with a cheap price range"),
        vp=("has low prices", "is cheap", "is inexpensive", "has a cheap price range"),
        alone=("Its prices are low.", "Prices there are low.", "It is inexpensive."),
    ),
    "moderate": Forms(
        adj=("moderately priced", "mid-priced"),
        post=("with moderate prices", "with a moderate price range", "with average prices"),
        vp=("has moderate prices", "is moderately priced", "has a moderate price range",
            "charges average prices"),
        alone=("Its prices are moderate.", "Prices there are average."),
    ),
    "high": Forms(
        adj=("expensive", "high-priced", "pricey"),
        post=("with high prices", "with a high price range"),
        vp=("is expensive", "has high prices", "has a high price range", "charges high prices"),
        alone=("Its prices are high.", "It is expensive.", "Prices there are high."),
    ),
    "less than £20": Forms(
        post=("with prices of less than £20", "with a price range of less than £20",
              "where meals cost less than £20"),
        vp=("has a price range of less than £20", "charges less than £20",
            "has prices under £20", "offers meals for less than £20"),
        alone=("Meals there cost less than £20.", "Its prices are under £20."),
    ),
    "£20-25": Forms(
        post=("with prices of £20-25", "with a price range of £20-25",
              "in the £20-25 price range"),
        vp=("has a price range of £20-25", "charges £20-25", "has prices of £20-25",
            "offers meals for £20-25"),
        alone=("Meals there cost £20-25.", "Its prices are in the £20-25 range."),
    ),
    "more than £30": Forms(
        post=("with prices of more than £30", "with a price range of over £30",
              "where meals cost more than £30"),
        vp=("charges more than £30", "has a price range of more than £30",
            "has prices above £30", "offers meals for over £30"),
        alone=("Meals there cost more than £30.", "Its prices are over £30."),
    ),
}


def _rating_forms(value: str) -> Forms:
    if value in ("low", "average", "high"):
        art = "an" if value == "average" else "a"
        adj = {"low": ("low-rated", "poorly rated"), "average": ("average-rated",),
               "high": ("highly rated", "well-rated")}[value]
        by = {"low": "poorly", "average": "average", "high": "highly"}[value]
        return Forms(
            adj=adj,
            post=(f"with {art} {value} customer rating", f"with {art} {value} rating",
                  f"rated {by} by customers"),
            vp=(f"has {art} {value} customer rating", f"is rated {by} by customers",
                f"has {art} {value} rating"),
            alone=(f"Customers give it {art} {value} rating." if value == "average"
                   else f"Customers rate it {by}.", f"Its customer rating is {value}.",
                   f"It has {art} {value} customer rating."),
        )
    return Forms(
        post=(f"with a customer rating of {value}", f"rated {value} by customers",
              f"with a rating of {value}"),
        vp=(f"has a customer rating of {value}", f"is rated {value} by customers",
            f"has a rating of {value}"),
        alone=(f"Customers rate it {value}.", f"Its customer rating is {value}.",
               f"It is rated {value} by customers."),
    )


_AREA = {
    "riverside": Forms(
        post=("by the riverside", "on the riverside", "in the riverside area",
              "located by the riverside"),
        vp=("is located by the riverside", "is on the riverside",
            "is situated in the riverside area", "can be found by the riverside"),
        front=("By the riverside", "Located on the riverside", "In the riverside area"),
        alone=("It is located by the riverside.", "You can find it on the riverside."),
    ),
    "city centre": Forms(
        post=("in the city centre", "in the centre of the city", "located in the city centre"),
        vp=("is located in the city centre", "is in the city centre",
            "is situated in the centre of the city", "can be found in the city centre"),
        front=("In the city centre", "Located in the city centre", "In the centre of the city"),
        alone=("It is located in the city centre.", "You can find it in the city centre."),
    ),
}

_FAMILY = {
    "yes": Forms(
        adj=("family-friendly", "kid-friendly", "child-friendly"),
        post=("that welcomes families", "suitable for families", "where children are welcome"),
        vp=("is family-friendly", "is kid-friendly", "welcomes families",
            "is suitable for children", "welcomes children"),
        alone=("Children are welcome.", "It is family-friendly.", "Families are welcome there."),
    ),
    "no": Forms(
        adj=("adults-only",),
        post=("that is not family-friendly", "that is not suitable for children",
              "for adults only", "where children are not welcome"),
        vp=("is not family-friendly", "is not kid-friendly", "is not suitable for children",
            "does not welcome children", "is for adults only"),
        alone=("Children are not welcome.", "It is not family-friendly.",
               "It is for adults only."),
    ),
}


def _near_forms(place: str) -> Forms:
    return Forms(
        post=(f"near {place}", f"close to {place}", f"not far from {place}"),
        vp=(f"is near {place}", f"is located near {place}", f"is close to {place}",
            f"is not far from {place}"),
        front=(f"Near {place}", f"Close to {place}", f"Located near {place}"),
        alone=(f"It is located near {place}.", f"It is close to {place}."),
    )


def forms(attr: str, value: str) -> Forms:
    if attr == "food":
        return _food_forms(value)
    if attr == "priceRange":
        return _PRICE[value]
    if attr == "customerRating":
        return _rating_forms(value)
    if attr == "area":
        return _AREA[value]
    if attr == "familyFriendly":
        return _FAMILY[value]
    if attr == "near":
        return _near_forms(value)
    raise KeyError(attr)


# ----------------------------------------------------------------------------- helpers

def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _np(adjs: list[tuple[str, str]], noun: str) -> str:
    """'a cheap, highly rated pub' / 'a cheap French pub' (indefinite), from (attr, adj)."""
    evaluative = [adj for attr, adj in adjs if attr != "food"]
    food = [adj for attr, adj in adjs if attr == "food"]
    text = " ".join([", ".join(evaluative), *food]).strip() if evaluative else " ".join(food)
    text = f"{text} {noun}".strip()
    return f"{_article(text)} {text}"


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _post_key(phrase: str) -> int:
    """1 for a relative-clause post-modifier ("that serves ...", "where ...")."""
    return 1 if phrase.split()[0] in ("that", "where") else 0


# ----------------------------------------------------------------------------- generator

class Generator:
    name = "d2t"
    version = "1"

    def sample_record(self, rng: random.Random) -> dict[str, str]:
        k = rng.choice((2, 3, 3, 4, 4, 5, 5, 6, 6, 7))
        attrs = rng.sample(OPTIONAL, k)
        record = {"name": f"The {rng.choice(NAME_ADJS)} {rng.choice(NAME_NOUNS)}"}
        for a in attrs:
            record[a] = rng.choice(VALUES[a])
        return record

    def source(self, record: dict[str, str]) -> str:
        return ", ".join(f"{a}[{record[a]}]" for a in ATTRS if a in record)

    # -- realization -------------------------------------------------------------------

    def realize(self, record: dict[str, str], rng: random.Random) -> str:
        name = record["name"]
        eat = record.get("eatType")
        noun = eat if eat else rng.choice(GENERIC_NOUNS)
        rest = [a for a in OPTIONAL if a in record and a != "eatType"]
        rng.shuffle(rest)
        max_sents = min(3, len(rest))
        weights = [4, 4, 2][:max_sents]
        n = rng.choices(range(1, max_sents + 1), weights=weights)[0]
        # Split the shuffled attributes into n non-empty consecutive groups.
        cuts = sorted(rng.sample(range(1, len(rest)), n - 1)) if n > 1 else []
        bounds = [0, *cuts, len(rest)]
        groups = [rest[bounds[i]:bounds[i + 1]] for i in range(n)]

        sentences = [self._first(record, name, eat, noun, groups[0], rng)]
        for group in groups[1:]:
            sentences.append(self._later(record, name, noun, group, rng))
        return " ".join(sentences)

    def _first(self, record, name, eat, noun, group, rng) -> str:
        style = rng.choices(("is_a", "that", "there", "front", "appos", "vps"),
                            weights=(4, 2, 1, 2, 2, 2))[0]
        if style == "front" and not any(forms(a, record[a]).front for a in group):
            style = "is_a"
        if style == "appos" and len(group) < 2:
            style = "is_a"
        if style == "vps" and (not eat or len(group) > 3):
            style = "that"

        pending = list(group)
        front = ""
        if style == "front":
            a = rng.choice([a for a in pending if forms(a, record[a]).front])
            front = rng.choice(forms(a, record[a]).front)
            pending.remove(a)

        if style == "vps":  # "Name is a pub, serves French food and has low prices."
            parts = [f"is {_article(noun)} {noun}"]
            parts += [rng.choice(forms(a, record[a]).vp) for a in pending]
            return f"{name} {_join(parts)}."

        # Prenominal adjectives (optional per attribute, at most two).
        adjs: dict[str, str] = {}
        for a in list(pending):
            f = forms(a, record[a])
            if f.adj and len(adjs) < 2 and rng.random() < 0.45:
                adjs[a] = rng.choice(f.adj)
                pending.remove(a)
        np = _np([(a, adjs[a]) for a in ADJ_ORDER if a in adjs], noun)

        if style == "appos" and pending:
            # "Name, a French pub near X, has low prices and welcomes families."
            n_post = rng.randint(0, min(1, len(pending) - 1))
            posts = [self._post(record, a, rng, relative=False) for a in pending[:n_post]]
            vps = [rng.choice(forms(a, record[a]).vp) for a in pending[n_post:]]
            head = " ".join([np, *posts])
            return f"{name}, {head}, {_join(vps)}."

        # "that" style: "a pub that serves ... and has ..."; otherwise post-modifiers
        # ("a pub near X with low prices"), spilling extra attributes into ", and it ...".
        n_post = 0 if style == "that" else min(len(pending), rng.choice((1, 2, 3, 3)))
        post_attrs, vp_attrs = pending[:n_post], pending[n_post:]
        relative_ok = len(post_attrs) == 1 and not vp_attrs
        posts = [self._post(record, a, rng, relative=relative_ok) for a in post_attrs]
        tail = (" " + _join(posts)) if posts else ""
        if vp_attrs:
            vps = [rng.choice(forms(a, record[a]).vp) for a in vp_attrs]
            tail += (", and it " if posts else " that ") + _join(vps)
        if style == "there":
            return f"There is {np} {rng.choice(('called', 'named'))} {name}{tail}."
        if front:
            return f"{front}, {name} is {np}{tail}."
        return f"{name} is {np}{tail}."

    @staticmethod
    def _post(record, attr, rng, relative: bool) -> str:
        options = forms(attr, record[attr]).post
        if not relative:
            options = tuple(p for p in options if not _post_key(p)) or options
        return rng.choice(options)

    def _later(self, record, name, noun, group, rng) -> str:
        if len(group) == 1 and rng.random() < 0.4:
            alone = forms(group[0], record[group[0]]).alone
            if alone:
                return rng.choice(alone)
        subj = rng.choice(("It", "It", name, f"The {noun}", f"This {noun}"))
        vps = [rng.choice(forms(a, record[a]).vp) for a in group]
        return f"{subj} {_join(vps)}."


TASK = BuiltinTask(
    name="d2t",
    description=(
        "E2E-style data-to-text: restaurant meaning representation -> fluent description "
        "(one-to-many: attribute order, aggregation, lexical choice)"
    ),
    generator=Generator(),
    max_source_tokens=64,
    max_target_tokens=72,
    metric="bleu",
)
