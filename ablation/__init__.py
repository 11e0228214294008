"""A test-first reproducibility and ablation suite for tiny CNNs on MNIST."""
from .engine.models import Net, count_parameters, for_step, normalize
from .engine.train import train, train_many
from .study.registry import FINAL_STEP, STEPS, get_step
from .study.step import Step


def build_model(step_name: str) -> Net:
    """The step's network (one seed, PyTorch's default initialisation).

    It takes images normalised with mean 0.1307 and std 0.3081 (see `normalize`), shape (N, 1, 28, 28),
    and returns (N, 10) logits, or log-probabilities for a step evaluated with test-time views (`Step.tta`,
    `Step.tta_rotations`) while the module is in eval mode. A record's weights load with `model.load_state_dict(...)`.
    """
    step = get_step(step_name)
    return for_step(step)


__all__ = ["FINAL_STEP", "STEPS", "Net", "Step", "build_model", "count_parameters", "get_step", "normalize", "train", "train_many"]
