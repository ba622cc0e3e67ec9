"""SparsehaloTrainer / SparsehaloCallback on a tiny random BERT and synthetic tokens: the loss and its
accumulation, the scales' group, shrinkage and logging, the prune at the end, a plain save_pretrained,
and exact resume from a Trainer checkpoint."""

import importlib
import sys

import pytest
import torch
from support import require_extra

import sparsehalo

transformers = require_extra("transformers", "hf")
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    TrainerCallback,
    TrainingArguments,
)

from sparsehalo.integrations.hf import (
    PENALTY_FILE,
    SparsehaloCallback,
    SparsehaloTrainer,
)

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")
LINEAR = 2 * 6 + 2  # per layer q, k, v, attention output, intermediate, output; then pooler and classifier


def tiny_bert():
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(
        vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
        max_position_embeddings=32, num_labels=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))


class Tokens(torch.utils.data.Dataset):
    """64 random sequences of 16 tokens; the label is whether the first token is below 50."""

    def __init__(self, n=64):
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(1, 100, (n, 16), generator=g)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(16, dtype=torch.long),
                "labels": int(self.ids[i, 0] < 50)}


def arguments(tmp_path, **kw):
    settings = dict(output_dir=str(tmp_path), per_device_train_batch_size=16, max_steps=12, learning_rate=1e-3,
                    logging_steps=4, save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True, seed=0)
    settings.update(kw)
    return TrainingArguments(**settings)


def penalized_weights(model, names):
    params = dict(model.named_parameters())
    return [params[n] for n in names]


class BeforePrune(TrainerCallback):
    """Keeps the mean |w| of the default selection (what HALO penalizes) at the end of training, before
    the prune (list it first)."""

    mean_abs = None

    def on_train_end(self, args, state, control, model=None, **kwargs):
        ws = list(sparsehalo.prunable_parameters(model).values())
        self.mean_abs = float(sum(w.detach().abs().sum() for w in ws) / sum(w.numel() for w in ws))


def test_penalty_shrinks_logs_prunes_and_save_pretrained_is_a_plain_model(tmp_path):
    model = tiny_bert()
    cb = SparsehaloCallback("halo", xi=2e-3, psi=2e-3, prune_sparsity=0.9, verbose=False)
    before = BeforePrune()
    trainer = SparsehaloTrainer(model=model, args=arguments(tmp_path / "halo"), train_dataset=Tokens(),
                                callbacks=[before, cb])
    trainer.train()

    names = list(cb.penalty.penalized())
    assert len(names) == LINEAR and not any("embeddings" in n or "LayerNorm" in n for n in names)
    groups = trainer.optimizer.param_groups
    assert groups[-1]["name"] == "penalty:halo" and groups[-1]["weight_decay"] == 0.0
    assert len(trainer.lr_scheduler.get_last_lr()) == len(groups)  # the scheduler was made with the group
    assert all(p.grad is None for p in cb.penalty.parameters())  # zeroed after each step, not accumulated

    # the same run without a penalty: HALO shrank the penalized weights
    baseline = BeforePrune()
    SparsehaloTrainer(model=tiny_bert(), args=arguments(tmp_path / "none"), train_dataset=Tokens(),
                      callbacks=[baseline, SparsehaloCallback("none", verbose=False)]).train()
    assert before.mean_abs < 0.9 * baseline.mean_abs

    logs = [row for row in trainer.state.log_history if "loss" in row]
    assert len(logs) == 3 and all(row["penalty/value"] > 0 for row in logs)
    assert logs[-1]["penalty/scale_mean"] < 1.0  # the scales shrank from lambda_init = 1
    weights = penalized_weights(model, names)
    total = sum(w.numel() for w in weights)
    zeros = sum(int((w == 0).sum()) for w in weights)
    assert zeros == round(0.9 * total)
    (final,) = [row for row in trainer.state.log_history if "sparsity" in row]
    assert final["sparsity"] == zeros / total == cb.table.sparsity and f"sparsity/{names[0]}" in final

    model.save_pretrained(tmp_path / "out")
    loaded, info = BertForSequenceClassification.from_pretrained(tmp_path / "out", output_loading_info=True)
    assert not any(info.values()), info  # no missing, unexpected or mismatched keys
    state, plain_keys = loaded.state_dict(), set(tiny_bert().state_dict())
    assert set(state) == plain_keys and not any("orig" in k or "scale" in k for k in state)
    for k, v in model.state_dict().items():
        assert torch.equal(state[k], v), k
    assert sum(int((w == 0).sum()) for w in penalized_weights(loaded, names)) == zeros


def test_the_loss_includes_the_penalty_once_per_step_and_not_in_evaluation(tmp_path):
    model = tiny_bert()
    cb = SparsehaloCallback("halo", xi=1e-3, psi=1e-3, verbose=False)
    trainer = SparsehaloTrainer(model=model, args=arguments(tmp_path, gradient_accumulation_steps=2),
                                train_dataset=Tokens(), callbacks=[cb])
    trainer._sparsehalo()
    trainer.create_optimizer()
    batch = {k: torch.stack([torch.as_tensor(Tokens()[i][k]) for i in range(4)])
             for k in ("input_ids", "attention_mask", "labels")}
    model.train()
    penalty = cb.penalty().detach()
    data = model(**batch).loss.detach()
    torch.testing.assert_close(trainer.compute_loss(model, dict(batch)).detach(), data + penalty)
    # a loss normalized by num_items_in_batch is not divided by the Trainer: the penalty is, by the 2 steps
    assert trainer.model_accepts_loss_kwargs
    n = torch.tensor(4)
    data_n = model(**batch, num_items_in_batch=n).loss.detach()
    torch.testing.assert_close(trainer.compute_loss(model, dict(batch), num_items_in_batch=n).detach(),
                               data_n + penalty / 2)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(trainer.compute_loss(model, dict(batch)), model(**batch).loss)


def _run(tmp_path, stop_at=None, resume=None):
    cb = SparsehaloCallback("halo", xi=1e-3, psi=1e-3, target_sparsity=0.5, verbose=False)
    callbacks = [cb]
    if stop_at:
        class Stop(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step == stop_at:
                    control.should_training_stop = True
        callbacks.append(Stop())
    model = tiny_bert()
    save = dict(save_strategy="steps", save_steps=stop_at) if stop_at else {}
    SparsehaloTrainer(model=model, args=arguments(tmp_path, **save), train_dataset=Tokens(),
                      callbacks=callbacks).train(resume_from_checkpoint=resume)
    return model.state_dict(), cb.penalty.state_dict()


def test_resume_from_a_trainer_checkpoint_is_exact(tmp_path):
    weights, penalty = _run(tmp_path / "a")
    _run(tmp_path / "b", stop_at=6)
    ckpt = tmp_path / "b" / "checkpoint-6"
    saved = torch.load(ckpt / PENALTY_FILE, weights_only=True)
    assert saved["state"]["controller.step"] == 6 and saved["total_steps"] == 12
    resumed_weights, resumed_penalty = _run(tmp_path / "b", resume=str(ckpt))
    for k in weights:
        assert torch.equal(resumed_weights[k], weights[k]), k
    for k in penalty:
        assert torch.equal(resumed_penalty[k], penalty[k]), k
    (ckpt / PENALTY_FILE).unlink()  # the control: without the penalty's file the run does not continue
    with pytest.warns(UserWarning, match="has no sparsehalo_penalty.pt"):
        _, fresh = _run(tmp_path / "b", resume=str(ckpt))
    assert not torch.equal(fresh["controller.step"], penalty["controller.step"])


def test_a_plain_trainer_with_the_callback_refuses_to_train(tmp_path):
    trainer = transformers.Trainer(model=tiny_bert(), args=arguments(tmp_path, max_steps=1), train_dataset=Tokens(),
                                   callbacks=[SparsehaloCallback("halo", verbose=False)])
    with pytest.raises(RuntimeError, match="needs a SparsehaloTrainer"):
        trainer.train()


def test_a_missing_extra_is_one_line(monkeypatch):
    monkeypatch.delitem(sys.modules, "sparsehalo.integrations.hf")
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError) as info:
        importlib.import_module("sparsehalo.integrations.hf")
    assert "\n" not in str(info.value) and "pip install 'sparsehalo[hf]'" in str(info.value)
