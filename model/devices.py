"""What compute devices the machine has, asked once by training and inference alike."""

from pathlib import Path

GPU_DRIVER_FILES = ("/dev/nvidiactl", "/dev/kfd", "/dev/dxg")  # NVIDIA, AMD ROCm, WSL


def gpu_available() -> bool:
    """Whether torch sees a GPU; without a GPU driver on the machine, known without importing
    torch."""
    if not any(Path(file).exists() for file in GPU_DRIVER_FILES):
        return False
    import torch

    return torch.cuda.is_available()
