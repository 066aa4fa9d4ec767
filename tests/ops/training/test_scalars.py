from ops.training.launch import _Follower, latest_checkpoint
from ops.training.scalars import JsonlSummaryWriter, read_steps


def test_writer_and_reader_keep_the_latest_value_per_step(tmp_path):
    w = JsonlSummaryWriter(str(tmp_path))
    for step, loss in ((0, 3.0), (1, 2.5), (1, 2.4)):
        w.add_scalar("train/loss", loss, step)
        w.add_scalar("train/lr", 0.1 * (step + 1), step)
    w.add_scalar("val/loss", 9.0, 1)
    w.close()
    with open(tmp_path / "scalars.jsonl", "a") as f:
        f.write('{"step": 2, "tag": "train/lo')  # cut off by a crash
    assert read_steps(tmp_path / "scalars.jsonl") == [
        {"step": 0, "loss": 3.0, "lr": 0.1},
        {"step": 1, "loss": 2.4, "lr": 0.2},
    ]


def test_follower_hands_on_each_step_once_when_complete(tmp_path):
    path = tmp_path / "scalars.jsonl"
    seen = []
    f = _Follower(path, seen.append)
    f.poll()
    path.write_text('{"step": 0, "tag": "train/loss", "value": 1.0}\n{"step": 0, "tag": "train/lr", "value": 0.5}\n')
    f.poll()
    assert seen == []  # step 0 may still get values
    with path.open("a") as out:
        out.write('{"step": 1, "tag": "train/loss", "value": 0.9}\n{"step": 1, "tag"')
    f.poll()
    assert seen == [{"step": 0, "loss": 1.0, "lr": 0.5}]
    with path.open("a") as out:
        out.write(': "train/lr", "value": 0.4}\n')
    f.poll(final=True)
    assert seen[1] == {"step": 1, "loss": 0.9, "lr": 0.4}


def test_latest_checkpoint_orders_epochs_numerically(tmp_path):
    assert latest_checkpoint(tmp_path) == (None, 0)
    (tmp_path / "checkpoints").mkdir()
    for n in (2, 10, 9):
        (tmp_path / "checkpoints" / f"epoch_{n}.pt").touch()
    (tmp_path / "checkpoints" / "epoch_latest.pt").touch()
    assert latest_checkpoint(tmp_path) == (tmp_path / "checkpoints" / "epoch_10.pt", 10)
