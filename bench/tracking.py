"""Experiment tracking: the spec's `tracking:` block → Ray Tune's own logger callbacks.

Why Tune's callbacks and not logging from the workers: Train V2's `RunConfig(callbacks=...)`
accepts only Train `UserCallback`s, and rank 0's reports reach Tune anyway (through
`TuneReportCallback`), so the **Tuner's** `RunConfig` is the one place that sees every
trial's config, learning curve and final metrics, on the driver, once.

Ray's callbacks are used as they are, with three small changes made by subclassing:

* the x-axis is the training step a result reports (`step`), not Tune's report counter, so
  curves line up with `metrics.train.curve`; a result without `step` (the trial's final
  summary) is logged at the last step seen;
* MLflow runs are named after the kdbench trial (`task|method|r<ratio>|s<seed>`) and tagged
  with the kdbench run, so they can be found again;
* TensorBoard events go to `tracking.tensorboard.log_dir/<trial>` rather than into Tune's
  trial folders (Ray's `TBXLoggerCallback` has no log-dir argument), and the hparams record
  the whole flat trial config with the latest value of every metric.

W&B uses Ray's `WandbLoggerCallback` (offline without an API key; its x-axis is Tune's report counter; `step`
is logged as a metric). Every backend is an optional extra: a missing package fails before
any work with the `pip install` that fixes it.
"""
from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict

EXTRA_PACKAGES = {  # backend -> (import name, kdbench extra that installs it)
    "mlflow": ("mlflow", "mlflow"),
    "tensorboard": ("tensorboardX", "tensorboard"),
    "wandb": ("wandb", "wandb"),
}
# Result keys that are bookkeeping, not metrics (Tune adds them to every result).
NOT_METRICS = frozenset({"config", "pid", "timestamp", "date", "hostname", "node_ip",
                         "trial_id", "experiment_tag", "done", "should_checkpoint"})


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MLflowTracking(_Frozen):
    tracking_uri: str | None = None  # None: MLFLOW_TRACKING_URI, else MLflow's default
    experiment: str = "kdbench"


class TensorBoardTracking(_Frozen):
    log_dir: str = "tensorboard"  # a relative path is inside the run dir


class WandbTracking(_Frozen):
    project: str
    mode: Literal["online", "offline", "disabled"] = "online"


class TrackingSpec(_Frozen):
    """The spec's `tracking:` block; every backend is optional (none = no tracking)."""

    mlflow: MLflowTracking | None = None
    tensorboard: TensorBoardTracking | None = None
    wandb: WandbTracking | None = None


class MissingExtraError(ImportError):
    """A tracking backend named in the spec whose package is not installed."""


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def check_tracking(spec: TrackingSpec) -> None:
    """Fail before any work when a backend the spec names cannot run here: its package is
    missing, or MLflow would refuse the tracking store (MLflow 3 refuses its file store unless
    MLFLOW_ALLOW_FILE_STORE=true; database stores need SQLAlchemy, which mlflow-skinny lacks)."""
    for backend, (module, extra) in EXTRA_PACKAGES.items():
        if getattr(spec, backend) is not None and not _installed(module):
            raise MissingExtraError(
                f"tracking.{backend} needs the {module!r} package, which is not installed: "
                f"pip install 'kdbench[{extra}]' (or remove tracking.{backend} from the spec)")
    if spec.mlflow is not None:
        _check_mlflow_store(spec.mlflow.tracking_uri)


DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")


def _check_mlflow_store(uri: str | None) -> None:
    import mlflow
    from mlflow import environment_variables

    resolved = uri or mlflow.get_tracking_uri()  # MLFLOW_TRACKING_URI, else MLflow's default
    where = "tracking.mlflow.tracking_uri" if uri else "MLflow's default tracking URI"
    scheme = urlparse(resolved).scheme.split("+")[0]
    allow = getattr(environment_variables, "MLFLOW_ALLOW_FILE_STORE", None)
    if scheme in ("", "file") and allow is not None and not allow.get():
        raise ValueError(
            f"{where} {resolved!r} is MLflow's file store, which MLflow {mlflow.__version__} refuses "
            f"unless MLFLOW_ALLOW_FILE_STORE=true is set; set it, or use a tracking server "
            f"(http://HOST:PORT) or sqlite:///PATH/mlflow.db (needs the full 'mlflow' package)")
    if scheme in DATABASE_SCHEMES and not _installed("sqlalchemy"):
        raise MissingExtraError(
            f"{where} {resolved!r} is a database store, which needs SQLAlchemy: pip install mlflow "
            f"(the full package; mlflow-skinny has no database stores), or set "
            f"tracking.mlflow.tracking_uri to a tracking server (http://HOST:PORT)")


def tensorboard_dir(spec: TrackingSpec, run_dir: Path | str) -> Path | None:
    if spec.tensorboard is None:
        return None
    path = Path(spec.tensorboard.log_dir).expanduser()
    return path if path.is_absolute() else Path(run_dir) / path


def trial_label(config: dict[str, Any], fallback: str) -> str:
    """`task|method|r<ratio>|s<seed>` (+ init when not random) for a kdbench grid config."""
    config = trial_config(config)
    if not {"task", "method", "ratio", "seed"} <= config.keys():
        return fallback
    label = f"{config['task']}|{config['method']}|r{config['ratio']:g}|s{config['seed']}"
    init = config.get("student_init", "random")
    return label if init == "random" else f"{label}|{init}"


def trial_config(config: dict[str, Any]) -> dict[str, Any]:
    """A trial's own config (the grid passes it as {"trial": {...}})."""
    inner = config.get("trial")
    return inner if isinstance(inner, dict) else config


def tune_callbacks(spec: TrackingSpec, run_dir: Path | str,
                   shared_params: dict[str, Any] | None = None, verbose: bool = False) -> list:
    """Logger callbacks for the Tuner's `tune.RunConfig(callbacks=...)`.

    `shared_params` (e.g. the spec's `student_train`) are logged with every trial's own
    config, since the grid config holds only the axes (task, method, ratio, seed, init).
    W&B prints its run summaries only when `verbose` (the console stays quiet otherwise).
    """
    check_tracking(spec)
    run_dir = Path(run_dir)
    shared = dict(shared_params or {})
    callbacks: list = []
    if spec.mlflow is not None:
        callbacks.append(_mlflow_callback_cls()(
            tracking_uri=spec.mlflow.tracking_uri, experiment_name=spec.mlflow.experiment,
            tags={"kdbench.run": run_dir.name, "kdbench.run_dir": str(run_dir)},
            shared_params=shared))
    if spec.tensorboard is not None:
        callbacks.append(_tbx_callback_cls()(tensorboard_dir(spec, run_dir), shared_params=shared))
    if spec.wandb is not None:
        wandb_dir = run_dir / "wandb"
        wandb_dir.mkdir(parents=True, exist_ok=True)
        callbacks.append(_wandb_callback_cls()(
            project=spec.wandb.project, group=run_dir.name, mode=spec.wandb.mode,
            dir=str(wandb_dir.resolve()), settings={"silent": not verbose}))
    return callbacks


def log_report(spec: TrackingSpec, run_dir: Path | str, report_dir: Path | str) -> str | None:
    """Log the report folder as artifacts (`report/`) of an MLflow run named after the
    kdbench run; returns its run id. Rebuilt reports go to the same run (found by tag), so
    interim and final reports do not pile up. TensorBoard and W&B get nothing: the report is
    a folder of files, which neither shows usefully."""
    if spec.mlflow is None:
        return None
    check_tracking(TrackingSpec(mlflow=spec.mlflow))
    from mlflow.tracking import MlflowClient

    name = Path(run_dir).name
    client = MlflowClient(tracking_uri=spec.mlflow.tracking_uri)
    experiment = client.get_experiment_by_name(spec.mlflow.experiment)
    experiment_id = (experiment.experiment_id if experiment is not None
                     else client.create_experiment(spec.mlflow.experiment))
    found = [r for r in client.search_runs([experiment_id], "tags.`kdbench.role` = 'report'")
             if r.data.tags.get("kdbench.run") == name]
    if found:
        run_id = found[0].info.run_id
    else:
        run_id = client.create_run(experiment_id, run_name=name, tags={
            "kdbench.role": "report", "kdbench.run": name, "kdbench.run_dir": str(run_dir)}).info.run_id
    client.log_artifacts(run_id, str(report_dir), artifact_path="report")
    client.set_terminated(run_id)
    return run_id


# --- Ray's callbacks, adapted (built lazily: importing ray is slow and spec parsing needs none)

class _StepAxis:
    """The training step of a result: its `step`, else the last one seen for the trial."""

    def _step_of(self, trial, result: dict[str, Any]) -> int:
        last = self.__dict__.setdefault("_last_step", {})
        step = result.get("step")
        if isinstance(step, (int, float)) and not isinstance(step, bool) and math.isfinite(step):
            last[trial] = int(step)
        return last.get(trial, int(result.get("training_iteration", 0)))


def _flat(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, f"{name}/"))
        else:
            out[name] = value
    return out


def _mlflow_callback_cls():
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    class KdbenchMLflowCallback(_StepAxis, MLflowLoggerCallback):
        """Ray's MLflow callback with kdbench run names, shared params and a step axis."""

        def __init__(self, *args, shared_params: dict[str, Any] | None = None, **kwargs):
            super().__init__(*args, **kwargs)
            self.shared_params = shared_params or {}

        def log_trial_start(self, trial):
            if trial not in self._trial_runs:
                name = trial_label(trial.config, str(trial))
                tags = {**self.tags, "trial_name": str(trial), "kdbench.trial": name}
                self._trial_runs[trial] = self.mlflow_util.start_run(tags=tags, run_name=name).info.run_id
                params = {**_flat(self.shared_params, "spec/"), **_flat(trial_config(trial.config))}
                self.mlflow_util.log_params(run_id=self._trial_runs[trial], params_to_log=params)

        def log_trial_result(self, iteration, trial, result):
            if trial not in self._trial_runs:
                self.log_trial_start(trial)
            metrics = {k: v for k, v in result.items() if k not in NOT_METRICS}
            self.mlflow_util.log_metrics(run_id=self._trial_runs[trial], metrics_to_log=metrics,
                                         step=self._step_of(trial, result))

    return KdbenchMLflowCallback


def _tbx_callback_cls():
    from ray.air.constants import TRAINING_ITERATION
    from ray.tune.logger import TBXLoggerCallback
    from ray.tune.result import TIMESTEPS_TOTAL

    class KdbenchTBXCallback(_StepAxis, TBXLoggerCallback):
        """Ray's TensorBoard callback writing to `log_dir/<trial>` on the training-step axis."""

        def __init__(self, log_dir: Path, shared_params: dict[str, Any] | None = None):
            super().__init__()
            self.log_dir = Path(log_dir)
            self.shared_params = shared_params or {}
            self._latest: dict[Any, dict[str, Any]] = {}

        def log_trial_start(self, trial):
            if trial in self._trial_writer:
                self._trial_writer[trial].close()
            name = re.sub(r"[^A-Za-z0-9._=-]+", "_", trial_label(trial.config, str(trial)))
            self._trial_writer[trial] = self._summary_writer_cls(str(self.log_dir / name), flush_secs=30)
            self._trial_result[trial] = {}
            self._latest.setdefault(trial, {})

        def log_trial_result(self, iteration, trial, result):
            # Ray takes the x-axis from `timesteps_total or training_iteration`; handing it
            # the step as the iteration (never logged itself) keeps step 0 at 0.
            result = {k: v for k, v in result.items() if k not in NOT_METRICS}
            super().log_trial_result(iteration, trial, {
                **result, TIMESTEPS_TOTAL: None, TRAINING_ITERATION: self._step_of(trial, result)})
            self._latest.setdefault(trial, {}).update(self._trial_result[trial])
            self._trial_result[trial] = self._latest[trial]

        def _try_log_hparams(self, trial, result):
            from tensorboardX.summary import hparams

            params = {k: v for k, v in _flat({**_flat(self.shared_params, "spec/"), **trial_config(trial.config)}).items()
                      if isinstance(v, (str, bool, int, float))}
            writer = self._trial_writer[trial].file_writer
            for summary in hparams(hparam_dict=params, metric_dict=result):
                writer.add_summary(summary)

    return KdbenchTBXCallback


def _wandb_callback_cls():
    from ray.air.integrations.wandb import WandbLoggerCallback

    class KdbenchWandbCallback(WandbLoggerCallback):
        """Ray's W&B callback; `mode: offline|disabled` needs no API key (Ray looks only at the
        WANDB_MODE variable before demanding one)."""

        def setup(self, *args, **kwargs):
            if self.kwargs.get("mode") in ("offline", "disabled"):
                return  # project and group are given by kdbench, and nothing is uploaded
            super().setup(*args, **kwargs)

    return KdbenchWandbCallback
