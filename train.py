"""Train an experiment: ``python train.py --config configs/<experiment>.yaml``."""

from lit_xai.cli import main

if __name__ == "__main__":
    main()
