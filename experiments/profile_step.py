"""Time the parts of one training step (augment, front end, teacher forward, student forward+backward).

usage: python experiments/profile_step.py FEATURIZE_DIR THREADS STEPS
Alternates nothing itself: run it several times, alternating thread counts, on a loaded machine.
"""

from __future__ import annotations

import sys
import time

import torch

from bifsmn_cli.audio.augment import AugmentConfig, Augmenter
from bifsmn_cli.audio.frontend import FrontEnd
from bifsmn_cli.data import packed
from bifsmn_cli.nn import DFSMN, HED, HEDConfig, ModelConfig

directory, threads, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
split = packed.load_split(directory, "train")
waves = torch.from_numpy(split.waves[: 96 * steps].copy())
labels = torch.from_numpy(split.labels[: 96 * steps].astype("int64"))
noises = list(packed.load_noises(directory).values())
aug = Augmenter(AugmentConfig(), noises, silence_label=0)
fe = FrontEnd()
cfg = ModelConfig(num_classes=10)
teacher = DFSMN(cfg).eval()
student = DFSMN(cfg, binarizer="bifsmn", variants=("1x", "0.5x", "0.25x"))
hed = HED(HEDConfig())
opt = torch.optim.AdamW(student.parameters(), 1e-3)
topt = torch.optim.SGD(DFSMN(cfg).parameters(), 0.01)
tmodel = DFSMN(cfg)
topt = torch.optim.SGD(tmodel.parameters(), 0.01, momentum=0.9)
g = torch.Generator().manual_seed(0)
t = dict.fromkeys(["augment", "frontend", "teacher_fwd", "student_step", "teacher_step"], 0.0)
for i in range(steps):
    w = waves[i * 96 : (i + 1) * 96].float() / 32768
    y = labels[i * 96 : (i + 1) * 96]
    a = time.perf_counter()
    x = aug(w, y, g)
    b = time.perf_counter()
    f = fe(x)
    c = time.perf_counter()
    with torch.no_grad():
        tl, tb = teacher(f, return_blocks=True)
        targets = hed.targets(tb)
    d = time.perf_counter()
    out = student.forward_multi(f, ("1x", "0.5x", "0.25x"), True)
    loss = sum(torch.nn.functional.cross_entropy(lo, y) + 0.01 * hed(bl, targets) for lo, bl in out.values())
    opt.zero_grad()
    loss.backward()
    opt.step()
    e = time.perf_counter()
    loss = torch.nn.functional.cross_entropy(tmodel(f), y)
    topt.zero_grad()
    loss.backward()
    topt.step()
    h = time.perf_counter()
    if i:  # skip warm-up
        for k, v in zip(t, (b - a, c - b, d - c, e - d, h - e), strict=True):
            t[k] += v
n = steps - 1
print(f"threads {threads}: " + ", ".join(f"{k} {1000 * v / n:.1f} ms" for k, v in t.items()))
steps_epoch = 12325 / 96
print(
    f"  per epoch ({steps_epoch:.0f} steps): teacher {steps_epoch * (t['augment'] + t['frontend'] + t['teacher_step']) / n:.1f} s, "
    f"student {steps_epoch * (t['augment'] + t['frontend'] + t['teacher_fwd'] + t['student_step']) / n:.1f} s"
)
