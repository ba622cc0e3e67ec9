"""The bench extra (nncf, torchao), exercised in CI: benchmarks/nncf_rb.py trains NNCF's RB sparsity side by side."""

import json
import subprocess
import sys

from support import ROOT, require_extra

require_extra("nncf", "bench")
require_extra("torchao", "bench")


def test_nncf_rb_trains_masks_and_prunes_to_the_level(tmp_path):
    cmd = [sys.executable, str(ROOT / "benchmarks" / "nncf_rb.py"), "--dataset", "mnist", "--model", "lenet300",
           "--level", "0.9", "--recipe", "nncf", "--epochs", "1", "--threads", "1", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "mnist_lenet300_nncf_0.9_seed0.json").read_text())
    assert result["masked_entries"] == 266_200  # every Linear weight got a keep-logit
    assert abs(result["sparsity_pruned"] - 0.9) <= 1 / 266_200  # the same exact magnitude prune as every method
    assert 0.0 <= result["mask_sparsity"] <= result["zeros_after_strip"] + 1e-9  # strip merged the masks into zeros
    assert result["test_acc_masked"] > 50 and result["test_acc_pruned"] > 50  # one epoch learns MNIST well past chance
    assert len(result["log"]) == 1 and result["log"][0]["rb_target"] <= 0.9
