"""A search's Optuna study on disk, <out>/journal.log: opened by the search (search.py) and read by the report.

Optuna's journal storage is an append-only file of operations (a trial created, a value reported, a state
told) behind a file lock: a search resumes by reading it again, and several processes, or Ray workers that
see the folder, share one study with no database server. One study per folder, named STUDY.

Optuna is an optional dependency (`pip install -e '.[search]'`), imported only here and only when asked for.
"""
from __future__ import annotations

from pathlib import Path

INSTALL = "pip install -e '.[search]'"
JOURNAL = "journal.log"
STUDY = "search"
AS_REGISTERED = "as_registered"  # the user attribute of the trial that trains the step's own recipe


class OptunaMissing(ImportError):
    pass


def import_optuna():
    try:
        import optuna
    except ImportError as e:
        raise OptunaMissing(f"search needs Optuna, which is not installed here ({e}); install it with: {INSTALL}") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own lines say what happened, one per trial
    return optuna


def storage(folder: Path):
    """The journal storage of the search in `folder` (the folder and an empty journal made if new)."""
    optuna = import_optuna()
    from optuna.storages.journal import JournalFileBackend

    Path(folder).mkdir(parents=True, exist_ok=True)

    return optuna.storages.JournalStorage(JournalFileBackend(str(Path(folder) / JOURNAL)))


def requeued(trials) -> set[int]:
    """The numbers of the trials cut short (a Ctrl-C, a killed process) whose values were queued again."""
    return {t.user_attrs["requeued_from"] for t in trials if "requeued_from" in t.user_attrs}


def outcome(trial, again: set[int]) -> str:
    """What became of a trial, in the words the progress lines and the report use."""
    state = trial.state.name
    if state == "PRUNED":
        return "over budget" if "over_budget" in trial.user_attrs else "pruned"
    if state == "FAIL":
        return "interrupted" if trial.number in again else "failed"
    return {"COMPLETE": "complete", "RUNNING": "running", "WAITING": "waiting"}[state]


# The outcomes of a trial that trained, what --trials counts: a trial refused over the budget cost nothing, and
# one cut short is run again and counts then.
TRAINED = ("complete", "pruned", "failed")


def rows(study) -> list[dict]:
    """Every trial of `study` as a plain dict, by number: outcome, objective, assignments, parameters, when."""
    trials = study.get_trials(deepcopy=False)
    again = requeued(trials)
    out = []
    for t in sorted(trials, key=lambda t: t.number):
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() \
            if t.datetime_complete and t.datetime_start else None
        out.append({"number": t.number, "outcome": outcome(t, again), "value": t.value, "values": dict(t.params),
                    "set": t.user_attrs.get("set", []),
                    "params": t.user_attrs.get("params"), "pruned_at": t.user_attrs.get("pruned_at"),
                    "error": t.user_attrs.get("error"), "reused": t.user_attrs.get("reused", False),
                    "variant": t.user_attrs.get("variant"), "finished": t.datetime_complete, "seconds": seconds,
                    "as_registered": bool(t.user_attrs.get(AS_REGISTERED))})
    return out


def best(found: list[dict]) -> list[dict]:
    """The complete trials, best objective first (ties: the earlier trial first)."""
    return sorted((r for r in found if r["outcome"] == "complete"), key=lambda r: (-r["value"], r["number"]))


def load(folder: Path):
    """The study in `folder` (None when there is no journal there); OptunaMissing when Optuna is not installed."""
    if not (Path(folder) / JOURNAL).is_file():
        return None
    optuna = import_optuna()
    return optuna.load_study(study_name=STUDY, storage=storage(folder))
