"""A short real training run on phantom slices lowers the loss and keeps the best weights."""

import numpy as np
import torch

from lib.data.phantoms.phantom import generate_phantom
from lib.networks.presets import build_classifier, build_segmenter
from lib.training.loop import TrainSettings, fit, memory_format_for
from lib.training.loss import make_segmentation_loss
from lib.training.slices import SliceSet, segmentation_batches
from lib.training.validation import segmenter_mean_dice
from lib.transforms.preprocess import volume_to_model_grid


def small_slices(seed, n=2):
    phantom = generate_phantom("leg", seed, n_slices=n, spacing=(1.037037, 1.037037, 5.0))
    image, label = volume_to_model_grid(phantom.image, phantom.label, phantom.affine)
    return SliceSet.from_volume(image, label, f"phantom_{seed}")


def test_short_training_run_reduces_the_loss_and_keeps_the_best_epoch():
    torch.manual_seed(0)
    data = small_slices(7)
    model = build_segmenter("leg", "compact")
    batches = segmentation_batches(data, "leg", batch_size=2, crop=192, seed=0, augment=False)
    loss_fn = make_segmentation_loss("weighted_ce")
    x, y, w = next(segmentation_batches(data, "leg", batch_size=2, crop=192, seed=1, augment=False))
    model.train()
    with torch.no_grad():
        before = float(loss_fn(model(x), y, w))
    history = fit(model, batches, loss_fn, lambda m: segmenter_mean_dice(m, data, "leg"),
                  TrainSettings(epochs=3, steps_per_epoch=12, lr=5e-3))
    assert np.isclose(segmenter_mean_dice(model, data, "leg"), history.best_score, atol=1e-6)  # best kept
    model.train()  # (a train-mode forward moves the BN statistics: only after the check above)
    with torch.no_grad():
        after = float(loss_fn(model(x), y, w))
    assert after < 0.85 * before
    assert len(history.train_loss) == 3
    assert history.best_score == max([history.best_score, *history.val_score])


def test_training_stops_when_asked_and_keeps_weights_finite():
    data = small_slices(8, n=1)
    model = build_segmenter("leg", "compact")
    steps = iter(range(100))
    history = fit(model, segmentation_batches(data, "leg", batch_size=1, crop=96, augment=False),
                  make_segmentation_loss(), lambda m: 0.0, TrainSettings(epochs=5, steps_per_epoch=4),
                  should_stop=lambda: next(steps) >= 3)
    assert history.stopped and len(history.train_loss) == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())



def test_training_returns_plain_memory_layout():
    data = small_slices(9, n=1)
    model = build_segmenter("leg", "compact")
    fit(model, segmentation_batches(data, "leg", batch_size=1, crop=96, augment=False),
        make_segmentation_loss(), lambda m: 0.0, TrainSettings(epochs=1, steps_per_epoch=2), keep="last")
    assert all(p.is_contiguous() for p in model.parameters())  # trained channels-last, saved plain


def test_memory_format_is_nchw_only_for_narrow_batch_norms_on_cpu():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    compact, paper = build_segmenter("leg", "compact"), build_segmenter("leg", "paper")
    assert memory_format_for(compact, cpu) == torch.contiguous_format  # 8-channel batch norms
    assert memory_format_for(paper, cpu) == torch.channels_last
    assert memory_format_for(build_classifier("compact"), cpu) == torch.channels_last
    assert memory_format_for(compact, cuda) == torch.channels_last
    assert memory_format_for(compact, cpu, channels_last=True) == torch.channels_last
    assert memory_format_for(paper, cpu, channels_last=False) == torch.contiguous_format
