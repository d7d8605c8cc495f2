import sys
from pathlib import Path

# the benchmark scripts import each other as `python benchmarks/NAME.py` runs them: from their folder
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
