"""python -m rsvg_zeroov.tiny --out DIR : write the tiny offline models (random weights)."""
import argparse

from . import build_all

def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default=None, help="folder (default: $RSVG_ZEROOV_TINY_DIR or outputs/tiny_models)")
    args = p.parse_args()
    from ..models.registry import tiny_root

    out = build_all(args.out or tiny_root())
    print(f"tiny random-weight models written to {out} (qwen/, sd/, sam/sam_tiny.pth) - stand-ins, not the real weights")


if __name__ == "__main__":
    main()
