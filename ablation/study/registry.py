"""The ablation as data: every step of the study is a frozen `Step` (step.py), written as `replace(parent, ...)`.

`STEPS` is the ordered registry. The first seven entries are the seed study
(../shared/seed/000_96d402abc32860bd.txt) as its author describes it, with their Target, Result and
Analysis text kept word for word; `notes` says where the text is silent or contradicts itself and
what we chose. `changes` names the fields a step's target changes; a fast test checks that a step
differs from its parent in exactly those fields, so the diff between two entries *is* the ablation.
"""
from __future__ import annotations

from dataclasses import fields, is_dataclass, replace

from .step import Augment, Distill, Goals, Schedule, SeedReport, Step

SEEDS = (0, 1, 2, 3, 4)  # every step is reported over these five
# Confirmation seeds of the final step and of the best ≤ 6,000-parameter step, fixed on 2026-11-29 before any
# was run; nothing is chosen on them.
CONFIRMATION_SEEDS = tuple(range(100, 110))

# The seed's two non-GAP layouts could not be read off the text; this one is the step-3 network with
# its head swapped (last 3x3 to 12 channels, then a 6x6 convolution to 10 instead of GAP + 1x1), the
# closest layout we found to step 3 that gives exactly the 13,160 parameters the seed reports.
BASIC_LAYOUT = ("conv3:8", "conv3:16", "conv1:8", "pool", "conv3:16", "conv3:16", "conv3:16", "conv3p:12", "conv6:10")
GAP_LAYOUT = ("conv3:8", "conv3:16", "conv1:8", "pool", "conv3:16", "conv3:16", "conv3:16", "conv3p:16", "gap", "conv1:10")

_basic = Step(
    name="1-basic",
    parent=None,
    changes=(),
    target="To build Basic Model without Batchnorm, Dropout, Gap layers. 1. Get the set-up right 2. Set Transforms "
           "3. Set Data Loader 4. Set Basic Working Code 5. Set Basic Training & Test Loop. Batch size: 128, Lr=0.1",
    result="1. Total Parameters: 13160 2. Best Training Accuracy: 99.17 3. Best Testing Accuracy: 99.18",
    analysis="1. Parameters are higher than 10k 2. Very less under fitting : Testing Accuracy = Training Accuracy "
             "which is implies a good model 3. When trained for more epochs, the model would reach 99.40 "
             "4. Parameters need to be reduced. 5. Efficiency is to be increased",
    notes="The seed gives neither the layout, the optimiser nor the epochs. The layout is our reconstruction with "
          "exactly the reported 13,160 parameters (see BASIC_LAYOUT). Plain SGD (no momentum) at the stated lr 0.1: "
          "with momentum 0.9 this network without BatchNorm does not learn at all (training loss still 2.30 after "
          "one epoch, measured), while the seed's does. 15 epochs, the mission's budget.",
    params=13_160,
    layout=BASIC_LAYOUT,
    batchnorm=False,
    dropout=0.0,
    batch_size=128,
    optimizer="sgd",
    lr=0.1,
    momentum=0.0,
    weight_decay=0.0,
    schedule=Schedule(),
    augment=Augment(),
    label_smoothing=0.0,
    epochs=15,
    seeds=SEEDS,
    goals=Goals(),
    known_miss="13,160 parameters: over the 10,000 budget by design (the seed's own analysis says so); ≥ 99.4 % in "
               "each of the last 5 epochs holds on 0 of 5 seeds (minima 98.06, 98.60, 98.66, 97.86, 98.59 %)",
    floor_misses=(0, 1, 2, 3, 4),
    seed_report=SeedReport(params=13_160, best_train_acc=99.17, best_test_acc=99.18),
)

_bn_dropout = replace(
    _basic,
    name="2-bn-dropout",
    parent="1-basic",
    changes=("batchnorm", "dropout", "momentum"),
    target="To increase efficiency using Batchnorm and Dropout 1. Add Batchnorm 2. Add dropout = 0.1 "
           "3. Basic model remains the same. Batch size: 128, Lr=0.1",
    result="1. Parameters: 13160 2. Best Training Accuracy: 99.19 3. Best Test Accuracy: 99.29",
    analysis="1. Efficiency has increased: Adding Dropout and batchnorm has worked. 2. Under fitting in model expected "
             "as training includes dropout while testing doesn't. 3. The testing accuracy further needs to be "
             "increased. 4. Parameters used need to be reduced – Focus for the next experiment",
    notes="The seed reports 13,160 parameters again, but BatchNorm after the six 3x3 convolutions adds 2 x 84 = 168 "
          "(13,328): the seed most likely repeated step 1's figure. Dropout 0.1 after every 3x3 block. With BatchNorm "
          "the usual SGD momentum 0.9 trains at lr 0.1, and it is kept from here on (our one change beyond the text).",
    params=13_328,
    batchnorm=True,
    dropout=0.1,
    momentum=0.9,
    known_miss="13,328 parameters: over the 10,000 budget (the seed's own analysis says parameters must come down); "
               "≥ 99.4 % in each of the last 5 epochs holds on 0 of 5 seeds (minima 99.29, 99.23, 99.23, 99.22, 99.16 %)",
    seed_report=SeedReport(params=13_160, best_train_acc=99.19, best_test_acc=99.29),
)

_gap = replace(
    _bn_dropout,
    name="3-gap",
    parent="2-bn-dropout",
    changes=("layout",),
    target="To Reduce Parameters using GAP 1. Add GAP, slight changes made to the model "
           "2. Reduce batch size as the no. of parameters are assumed to be reduced on usage of GAP",
    result="1. Parameters: 9752 2. Best Training Accuracy: 99.16 (GAP and batch size =128) 3. Best Test Accuracy: "
           "99.35 (GAP and batch size = 128)",
    analysis="1. GAP layer of 8 kernels is used. If we reduce the kernels, more would be the convolutions and thus "
             "there is a chance to increase the accuracies but at the cost of increasing parameters. 2. Adding GAP "
             "layer has decreased no. of parameters and yet accuracy increased : GAP is working 3. Parameters have "
             "come below 10k: Parameter target reached. (Reducing kernels in GAP would increase parameters and thus, "
             "let us stick to this size.)",
    notes="The seed reports step 3 at batch 128 and at batch 64; this entry is batch 128, 3b-gap-bs64 the other. "
          "Layout: conv 1→8, 8→16, 1x1 16→8, max-pool, 8→16, 16→16, 16→16, 16→16 (padding 1), GAP, 1x1 16→10, "
          "exactly the seed's 9,752 parameters. The seed trained 20 epochs (its best is at epoch 19); we train the "
          "mission's 15, so its late figures are outside our window.",
    params=9_752,
    layout=GAP_LAYOUT,
    known_miss="≥ 99.4 % in each of the last 5 epochs holds on 0 of 5 seeds (minima 99.26, 99.13, 99.08, 99.18, 99.03 %); the seed "
               "does not claim it here either",
    seed_report=SeedReport(params=9_752, best_train_acc=99.16, best_test_acc=99.35, epochs_run=20),
)

_gap_bs64 = replace(
    _gap,
    name="3b-gap-bs64",
    parent="3-gap",
    changes=("batch_size",),
    result="1. Parameters: 9752 2. Best Training Accuracy: 99.28 (GAP and Batchsize=64) (19th epoch) "
           "3. Best Test Accuracy: 99.47 (GAP and Batchsize=64) (19th epoch)",
    analysis=_gap.analysis + " 4. Accuracy of 99.47 could be hit (though not consistent) at the 19th epoch (though "
             "not in less than 15 epochs) : 5. Reducing the Batchsize resulted in more iterations and thus has "
             "further increased the accuracy: Reducing batch size worked. Further reducing batchsize could be "
             "experimented with.",
    notes="The batch-64 variant of step 3, same learning rate (the seed does not rescale it).",
    batch_size=64,
    known_miss="≥ 99.4 % in each of the last 5 epochs holds on 0 of 5 seeds (minima 99.31, 99.31, 99.13, 99.32, 99.25 %); the seed "
               "says its 99.47 % was 'not consistent'",
    seed_report=SeedReport(params=9_752, best_train_acc=99.28, best_test_acc=99.47, epoch=19, epochs_run=20),
)

_augment = replace(
    _gap_bs64,
    name="4-augment",
    parent="3b-gap-bs64",
    changes=("augment",),
    target="To further increase efficiency and create a consistent model 1. Add image augmentation 1.1. Image rotation "
           "by -7 to 7 degrees 1.2. Color Jitter 2. Further Reduce Batch Size. (Batch size = 32)",
    result="1. Parameters: 9752 2. Best Training Accuracy: 99.00 (image augmentation and batch size = 64) (17th epoch) "
           "3. Best Test Accuracy: 99.45 (image augmentation and batch size = 64) (17th epoch)",
    analysis="1. When only augmentation was performed, 9.4 or more was hit frequently but taking 20 epochs. Learning "
             "rate could experimented with to get the same result in lesser epochs. 2. Model is under fitting as "
             "expected.",
    notes="Augmentation alone at batch 64 (the seed's first row); 4b-augment-bs32 then halves the batch. The seed "
          "does not give the jitter strengths: brightness and contrast ±0.1 here (saturation and hue do nothing to "
          "grey images; see augment.py). '9.4' in the analysis is the seed's typo for 99.4.",
    augment=Augment(rotation=7.0, brightness=0.1, contrast=0.1),
    known_miss="≥ 99.4 % in each of the last 5 epochs holds on 0 of 5 seeds (minima 99.24, 99.06, 99.11, 99.26, 99.09 %)",
    seed_report=SeedReport(params=9_752, best_train_acc=99.00, best_test_acc=99.45, epoch=17, epochs_run=20),
)

_augment_bs32 = replace(
    _augment,
    name="4b-augment-bs32",
    parent="4-augment",
    changes=("batch_size",),
    result="1. Parameters: 9752 2. Best Training Accuracy: 98.94 (image augmentation and batch size = 32) (13th epoch) "
           "99.06 (20th epoch) 3. Best Test Accuracy: 99.49 (image augmentation and batch size = 32) (13th epoch), "
           "99.53 (20th epoch)",
    analysis="3. Reducing batch size resulted in an accuracy of 99.49 at the 13th epoch. 4. 99.4 was hit 3 times "
             "before 15 epochs but there was a dip to 99.29 on the 15th epoch. 5. The model can be made more consistent.",
    notes="The batch-32 variant of step 4, same learning rate. The seed's 99.53 is at epoch 20, outside our 15.",
    batch_size=32,
    known_miss="≥ 99.4 % in each of the last 5 epochs holds on 0 of 5 seeds (minima 99.22, 99.19, 99.22, 99.16, 99.18 %); the seed "
               "saw the same: 'a dip to 99.29 on the 15th epoch'",
    seed_report=SeedReport(params=9_752, best_train_acc=98.94, best_test_acc=99.49, epoch=13, epochs_run=20),
)

_lr_schedule = replace(
    _augment_bs32,
    name="5-lr-schedule",
    parent="4b-augment-bs32",
    changes=("lr", "schedule"),
    target="To get the desired accuracy in lesser no. of epochs and create a consistent model 1. Change learning rate "
           "to achieve desired accuracy in lesser epochs 2. Introduce LR scheduler (lr=0.02, step = 4, gamma = 0.5)",
    result="1. Parameters: 9752 2. Best Training Accuracy: 99.16 (13th epoch) 3. Best Test Accuracy: 99.49 (13th epoch)",
    analysis="1. 99.4 Or above is hit 8 times before 15th epoch and 12 times before 20 epochs. 2. Using lr of 0.2 and "
             "reducing it by half for every 4th epoch has helped us reach desired accuracy (99.40) more quickly and "
             "more consistently. 3. Though Consistent, the accuracies did not exceed 99.49, thus a better LR "
             "scheduling is possible. 4. Target of attaining a consistent accuracy of 99.4 or above, within 10k "
             "parameters, within 15 epochs is reached. 5. Step is introduced manually and thus can go wrong at any "
             "point. 6. Finding correct step can result in even better accuracies",
    notes="The target says lr=0.02, the analysis 'lr of 0.2'. We take 0.02: it is the configuration line, and an "
          "independent re-run with 0.02 reproduced the seed's numbers (best 99.56 %). Batch 32 as at the end of "
          "step 4; StepLR(step_size=4, gamma=0.5) stepped once per epoch. The seed's claim of consistency is the "
          "mission itself, so this step carries the mission's goals.",
    known_miss="the seed's claim of consistency is a one-seed result: ≥ 99.4 % in each of the last 5 epochs holds on "
               "0 of 5 seeds (their minima 99.32, 99.38, 99.36, 99.35, 99.32 %)",
    floor_misses=(0, 1, 2, 3, 4),
    seeds=SEEDS,
    lr=0.02,
    schedule=Schedule(kind="step", step_epochs=4, gamma=0.5),
    seed_report=SeedReport(params=9_752, best_train_acc=99.16, best_test_acc=99.49, epoch=13, epochs_run=20),
)

SEED_STEPS = (_basic, _bn_dropout, _gap, _gap_bs64, _augment, _augment_bs32, _lr_schedule)

# --- beyond the seed ----------------------------------------------------------------------------
# Every choice below was made on a validation split (10,000 images held out of the training set,
# `run --holdout 10000`, records under reports/validation/); the test set is reported once, as it comes.
# Result and Analysis are written from the committed records.

_bs128 = replace(
    _lr_schedule,
    name="6-bs128",
    parent="5-lr-schedule",
    changes=("batch_size", "lr"),
    target="Four times the batch (32 → 128) with the learning rate scaled with it (0.02 → 0.08): the same "
           "schedule in a quarter of the steps, so every later experiment costs less.",
    result="Each run is faster than step 5's at batch 32 (compare the two steps' minutes a run, same CPU).",
    analysis="1. The larger batch with the scaled rate costs nothing in accuracy (99.41 against 99.40 % for step 5, "
             "within one standard deviation) and saves over a quarter of the wall time, so every later experiment starts "
             "here. 2. It does not fix consistency either: even at lr 0.01 (epochs 9–12) and 0.005 the test "
             "accuracy still moves by up to 0.1 % from one epoch to the next, which is what a schedule that settles "
             "before the judged epochs (step 7) addresses.",
    notes="Linear scaling rule for SGD: lr grows with the batch.",
    batch_size=128,
    lr=0.08,
    known_miss="≥ 99.4 % in each of the last 5 epochs holds on 1 of 5 seeds (minima 99.36, 99.35, 99.36, 99.43, 99.35 %)",
    floor_misses=(0, 1, 2, 4),
    seeds=SEEDS,
    seed_report=None,
)

_onecycle = replace(
    _bs128,
    name="7-onecycle",
    parent="6-bs128",
    changes=("schedule", "lr"),
    target="A one-cycle schedule that has settled before the judged epochs: warm up to a peak lr, anneal linearly "
           "to the floor by epoch 10, and hold it there, so the last 5 epochs barely move.",
    result="The training accuracy is measured with dropout on.",
    analysis="1. Once the learning rate has settled by epoch 10, the last five epochs move by at most 0.05 % on each "
             "seed, against up to 0.12 % under StepLR (step 5): the schedule buys the consistency the seed sought. "
             "2. Training accuracy sits 0.3 % below test accuracy: with dropout and augmentation together this small "
             "network under-fits, which points at dropout as the next thing to drop. 3. On the validation split "
             "(seed 0) this step ended at 99.14 % (last five 99.10–99.20 %). With step 10's layout, ending the anneal "
             "at epoch 13 instead of 10 gave 99.16 against 99.21 % and a lower minimum over the last five (99.04 "
             "against 99.18 %), so epoch 10 was kept.",
    notes="The lead from an independent trainer: one-cycle runs that were still at a large lr in epochs 11–12 "
          "dipped there. Peak and end epoch checked on the validation split with step 10's layout (seed 0): peak "
          "0.2 over 0.1 (99.21 against 99.16 %), anneal ending at epoch 10 over 13 (see the analysis).",
    known_miss=None,
    floor_misses=(),
    lr=0.2,
    schedule=Schedule(kind="onecycle", warmup=0.25, final_epoch=10),
)

_no_dropout = replace(
    _onecycle,
    name="8-no-dropout",
    parent="7-onecycle",
    changes=("dropout",),
    target="Drop dropout: a network this small under-fits (train accuracy stays below test accuracy), so the "
           "regularisation costs more than it gives, and augmentation already regularises.",
    result="",
    analysis="1. Without dropout the seed's own network, trained for 15 epochs, holds ≥ 99.4 % in each of the last 5 "
             "epochs on every seed, with a margin of 0.03 % or more (lowest 99.43 %); the mean final accuracy rises by "
             "0.03 % over step 7's, less than one seed's spread. 2. Training accuracy now exceeds test accuracy "
             "slightly (99.59 vs 99.50 %): the network is no longer held back by dropout noise, and there is room to "
             "spend fewer parameters, which the next two steps do.",
    notes="Chosen on the validation split (seed 0) with the 5,752-parameter layout of step 10, while it was still "
          "drafted as '9-narrow-6k' (reports/validation/9-narrow-6k*): dropout 0.1 ended at 98.95 % (last five epochs "
          "98.93–99.03 %), dropout 0 at 99.21 % (99.18–99.23 %).",
    dropout=0.0,
)

_narrow8k = replace(
    _no_dropout,
    name="9-narrow-8k",
    parent="8-no-dropout",
    changes=("layout",),
    target="Under 8,000 parameters: narrow the middle of the network (second convolution 16 → 12, the two after the "
           "pool 16 → 12), keeping the 16-wide end that GAP averages.",
    result="",
    analysis="1. The mission's own bar (under 10,000 parameters, ≥ 99.4 % in each of the last 5 epochs, 15 epochs) "
             "holds on every one of 5 seeds, with 7,536 parameters: the consistency the seed claimed from one run, "
             "now over five. 2. Our stricter goal for this step, a mean final accuracy of at least 99.5 %, is missed "
             "by 0.02 % (99.48 %). 3. Training accuracy is level with test accuracy: capacity, not over-fitting, "
             "limits it. 4. The layout was not tuned on the validation split; only the recipe it inherits was.",
    known_miss="the floor holds on 5 of 5 seeds (minima 99.47, 99.45, 99.43, 99.47, 99.43 %), but the mean final "
               "accuracy is 99.48 %, not ≥ 99.5 %",
    notes="",
    params=7_536,
    layout=("conv3:8", "conv3:12", "conv1:8", "pool", "conv3:12", "conv3:12", "conv3:16", "conv3p:16", "gap", "conv1:10"),
    seeds=SEEDS,
    goals=Goals(max_params=8_000, mean_final_floor=99.5),
)

_narrow6k = replace(
    _narrow8k,
    name="10-narrow-6k",
    parent="9-narrow-8k",
    changes=("layout",),
    target="Under 6,000 parameters: narrow every layer again (8, 10 | 10, 12, 12, 14).",
    known_miss="holds ≥ 99.4 % in each of the last 5 epochs on 4 of 5 seeds (seed 2: 99.35 %), and the mean final "
               "accuracy is 99.44 %, not ≥ 99.5 %",
    floor_misses=(2,),
    # The ≤ 6,000-parameter step whose judged seeds give the lowest predicted chance that a new seed misses the
    # floor (normal fit to the lowest of the last 5: 10-narrow-6k 99.426 ± 0.048 %, 19-views-6k 99.438 ± 0.070 %).
    confirmation_seeds=CONFIRMATION_SEEDS,
    confirmation_misses=(102, 103, 108),  # measured: each confirmation seed trained once, from 6d12278
    result="",
    analysis="1. The settled schedule did what step 7 aimed at: each seed's last five epochs lie within 0.05 % of one "
             "another, so consistency is no longer the problem; the level is. 2. Training accuracy equals test "
             "accuracy: the network is capacity-bound, not over-fitting. 3. One seed in five ends at 99.37 %, so the "
             "bar fails on that seed, and the mean, 99.44 %, is short of 99.5 %. 4. On the validation split (seed 0) "
             "none of the one-knob changes we tried beat this recipe (final 99.21 %): translation ±0.1 99.17, the "
             "anneal ending at epoch 13 99.16, weight decay 5e-4 99.14, label smoothing 0.1 99.18, peak lr 0.1 "
             "99.16 %; all within one seed's noise of each other. 5. Still better than both references: the seed's "
             "9,752-parameter recipe (step 5) holds the bar on 0 of 5 of our seeds (1 of 3 with an independent trainer), "
             "a 6,088-parameter public layout on 0 of 3 (independent trainer).",
    notes="Chosen on the validation split: the layout with dropout 0 (reports/validation/9-narrow-6k[dropout=0.0], "
          "its draft name) and the variants listed in the analysis (reports/validation/10-narrow-6k[...]).",
    params=5_752,
    layout=("conv3:8", "conv3:10", "conv1:8", "pool", "conv3:10", "conv3:12", "conv3:12", "conv3p:14", "gap", "conv1:10"),
    goals=Goals(max_params=6_000, mean_final_floor=99.5),
)

_no_jitter = replace(
    _narrow8k,
    name="11-no-jitter",
    parent="9-narrow-8k",
    changes=("augment",),
    target="Back to the 7,536-parameter layout of step 9, without the colour jitter: a grey digit's brightness and "
           "contrast carry no class information, and a network that cannot even fit its augmented training images "
           "(train accuracy level with test accuracy) should not spend capacity on them. Rotation ±7° stays.",
    result="The training accuracy is step 9's, to the hundredth.",
    analysis="1. A failure, kept as one: against step 9 with the same seeds the final test accuracy moved by −0.15, "
             "−0.10, +0.07, −0.08 and +0.01 % (mean −0.05 %), and seed 0 drops below the floor. 2. The validation "
             "split had pointed the other way: "
             "with step 10's layout (seeds 0 and 1) the jitter-free runs ended at 99.20 and 99.24 % against 99.21 and "
             "99.13 % with jitter (mean 99.22 against 99.17 %). Both differences are within the seed-to-seed spread "
             "(about ±0.05 % on validation, ±0.07 % here), so the colour jitter neither clearly helps nor hurts: what "
             "two seeds on a validation split can and cannot tell apart. 3. Training accuracy did not rise without "
             "the jitter, so the capacity the target expected to free was not spent on it; step 12 goes back to the "
             "jitter and looks for capacity in the layout instead.",
    notes="Chosen on the validation split (reports/validation/10-narrow-6k[augment.brightness=0.0,augment.contrast=0.0] "
          "against reports/validation/10-narrow-6k and 9-narrow-6k[dropout=0.0], the same recipe under its draft name). "
          "Seeds 3 and 4 were trained a session after the first three.",
    known_miss="holds ≥ 99.4 % in each of the last 5 epochs on 4 of 5 seeds (seed 0: 99.33 %), and the mean final "
               "accuracy is 99.43 %, not ≥ 99.5 %",
    floor_misses=(0,),
    augment=Augment(rotation=7.0),
)

_wide_end = replace(
    _narrow8k,
    name="12-wide-end",
    parent="9-narrow-8k",
    changes=("layout",),
    target="Still under 8,000 parameters, but spent later: the convolutions before and just after the pool narrow "
           "(12 → 10 channels each) and the middle one after the pool widens (12 → 16), so the last three 3x3 "
           "convolutions, at 8x8 and 6x6 where each output pixel sees most of the digit, are all 16 wide. "
           "7,952 parameters against step 9's 7,536.",
    result="",
    analysis="1. The mission's bar, ≥ 99.4 % in each of the last 5 epochs within 15 epochs, holds on every one of 10 "
             "seeds with 7,952 parameters, 18 % fewer than the seed's network; on three seeds (2, 4 and 8) by 0.01 %. "
             "2. The stricter goal of this project, a mean final accuracy of 99.5 %, is missed by 0.01 % (99.491 %). "
             "3. Against step 9 with the same seeds (0-4) the final accuracy moved by +0.07, +0.01, +0.01, −0.01 and "
             "−0.04 %: 416 more parameters placed late bought no measurable gain on the test set. 4. The choice was "
             "made on the validation split (seeds 0 and 1, final accuracy): this layout 99.24 and 99.22 %, step 9's "
             "99.09 and 99.25 %, and the same budget spent in the middle instead (12 → 14 for the three "
             "convolutions after the pool, 7,900 parameters) 99.13 and 99.19 %. 5. What the seeds spread shows: with "
             "a standard deviation of 0.04–0.06 % per run, a 5-seed mean is known to about ±0.025 %, so a step whose "
             "mean sits at 99.49 % cannot be told from one at 99.5 % by these runs; a clear pass needs a real gain of "
             "a few hundredths, which neither a wider layout nor the one-knob recipe changes tried so far have given. "
             "6. Seeds 5-9, added when step 17 failed on them, did not move the picture: their mean is 99.49 % as "
             "well and the floor holds on each. Of the 7,952-parameter "
             "recipes this one, whose anneal ends at epoch 10, is the only one that holds the floor on every seed; "
             "step 17 ends at the same mean (−0.001 ± 0.023 % paired over the ten seeds).",
    notes="Chosen on the validation split: reports/validation/9-narrow-8k (step 9 as it is), "
          "9-narrow-8k[layout=(...'conv3:10','conv3:16','conv3:16','conv3p:16'...)] (this step) and "
          "9-narrow-8k[layout=(...'conv3:14','conv3:14','conv3:14','conv3p:16'...)] (the middle widened).",
    known_miss="the floor holds on 10 of 10 seeds (lowest 99.41 %), but the mean final accuracy is 99.491 %, not "
               "≥ 99.5 %",
    params=7_952,
    layout=("conv3:8", "conv3:10", "conv1:8", "pool", "conv3:10", "conv3:16", "conv3:16", "conv3p:16", "gap", "conv1:10"),
    # Seeds 5-9 were added when step 17, which passed on seeds 0-4, failed on 5-9: fixed before they were trained.
    seeds=tuple(range(10)),
)

_wide_end6k = replace(
    _wide_end,
    name="13-wide-end-6k",
    parent="12-wide-end",
    changes=("layout",),
    target="Step 12's lesson at under 6,000 parameters: against step 10's layout, the first convolution after the "
           "pool narrows (10 → 8) and the two after it widen (12 → 14), the padded last one narrows (14 → 12). "
           "5,984 parameters.",
    result="",
    analysis="1. A failure, kept as one: against step 10 with the same seeds the final accuracy moved by −0.01, "
             "+0.02, −0.02, −0.13 and −0.06 %, and the floor now holds on 2 seeds instead of 4. 2. The validation "
             "split had pointed the other way, and clearly by its own measure: 99.28 and 99.24 % (seeds 0 and 1) "
             "against 99.21 and 99.13 % for step 10's layout, while a third layout (8, 8 | 10, 14, 12, 14, 5,988 "
             "parameters) ended at 99.18 % on seed 0. 3. Steps 11 and 13 together show the limit of choosing on two "
             "seeds of a 10,000-image validation split: differences of 0.05–0.1 % there do not carry over to the "
             "test set, because a single run's accuracy varies by about that much from seed to seed. At under 6,000 "
             "parameters, no change we could tell apart from noise has raised the level; the one lever that "
             "reliably does is capacity (5,752–5,984 parameters: 99.40–99.44 %; 7,536–7,952: 99.48–99.49 %; "
             "9,752: 99.50 %).",
    notes="Chosen on the validation split: reports/validation/10-narrow-6k[layout=(...'conv3:8','conv3:14','conv3:14',"
          "'conv3p:12'...)] (this layout) against 10-narrow-6k and 9-narrow-6k[dropout=0.0] (step 10's) and "
          "10-narrow-6k[layout=(...'conv3:10','conv3:14','conv3:12','conv3p:14'...)]. Tried afterwards on this layout, "
          "on the validation split only (seeds 0 and 1 against 99.28 and 99.24 %), none better: bilinear rotation "
          "99.00 and 99.32, momentum 0.95 99.09 and 99.18, peak lr 0.4 99.30 and 99.06, rotation ±10° 99.19 and "
          "99.22 % (reports/validation/13-wide-end-6k[...]). A later screen on seeds 0–3, against this layout's "
          "99.28, 99.24, 99.18 and 99.22 % (mean 99.23 %), found nothing better either (means of the 4 seeds): "
          "weight decay 1e-4 99.19 %; the four convolutions after the pool padded (step 14's change at this size) "
          "99.15 %; a second pool after the second of them 99.15 %. With the engine patched for the screen only "
          "(those records are not kept): Nesterov momentum 99.17 %; SiLU for ReLU 99.12 and 99.19 % (2 seeds); "
          "BatchNorm after the 1x1 transition as well (6,000 parameters) 99.13, 99.23 and 99.08 % (3 seeds). "
          "Re-estimating the BatchNorm statistics on clean training images after training moved 11 saved "
          "validation runs by −0.03 to +0.05 % (mean +0.01 %). A diagnostic beyond the budget: 25 epochs with the "
          "anneal ending at epoch 20 ended at 99.18, 99.19, 99.20 and 99.28 % (mean 99.21 %) with training accuracy "
          "up from 99.49 to 99.62 % (means): more training fits the training images better, not the held-out ones, "
          "so the 15-epoch budget is not what holds this size back. Screened later on the six folds, and not "
          "passing: augmentation ended after epoch 7, so that epochs 8-15 train on the images as they are "
          "(Augment.until_epoch; python -m ablation screen 13-wide-end-6k --set augment.until_epoch=7): final "
          "held-out accuracy minus this step's −0.03, +0.04, −0.04, −0.01, −0.03, +0.07 % (mean −0.000 %, 95 % CI "
          "[−0.047, +0.047]), ahead on 2 of 6, while training accuracy on the clean images rose to 99.6-99.7 %: "
          "this size does not lack a fit of the clean images, it generalises from them no better. Nor did "
          "sharpness-aware minimisation (Step.sam, ρ 0.05, the usual radius for SGD; each update takes the gradient "
          "at the weights moved ρ uphill, at twice the compute; python -m ablation screen 13-wide-end-6k --set "
          "sam=0.05): −0.12, +0.03, +0.02, −0.06, −0.08, +0.11 % (mean −0.017 %, 95 % CI [−0.106, +0.073]), ahead "
          "on 3 of 6.",
    known_miss="holds ≥ 99.4 % in each of the last 5 epochs on 2 of 5 seeds (seeds 2, 3, 4: 99.35, 99.35, 99.39 %), "
               "and the mean final accuracy is 99.40 %, not ≥ 99.5 %",
    floor_misses=(2, 3, 4),
    params=5_984,
    layout=("conv3:8", "conv3:10", "conv1:8", "pool", "conv3:8", "conv3:14", "conv3:14", "conv3p:12", "gap", "conv1:10"),
    goals=Goals(max_params=6_000, mean_final_floor=99.5),
    seeds=SEEDS,  # step 12 has ten
)

_padded8k = replace(
    _wide_end,
    name="14-padded-8k",
    parent="12-wide-end",
    changes=("layout",),
    target="Step 12's 7,952 parameters, used at more places: the four 3x3 convolutions after the pool are padded, so "
           "their maps stay 12x12 instead of shrinking to 10, 8, 6 and 6. Each of their weights is applied at 144 "
           "positions instead of 36–100, digit strokes near the border of the map are seen, and GAP averages over "
           "a 12x12 map. The receptive field is unchanged; the multiply-adds grow from 0.84 to 1.48 million per "
           "image (1.8×).",
    result="",
    analysis="1. A failure, kept as one: against step 12 with the same seeds the final accuracy moved by −0.10, "
             "−0.06, −0.06, −0.21 and +0.10 % (mean −0.07 %), and the floor now fails on seeds 2 and 3. "
             "2. Chosen on the validation split over six seeds (0–5): this layout ended at 99.25, 99.21, 99.23, "
             "99.28, 99.28 and 99.29 % (mean 99.26 %), step 12's at 99.24, 99.22, 99.15, 99.16, 99.22 and 99.32 % "
             "(mean 99.22 %), and this layout's lowest of the last five epochs stayed at or above 99.21 % on every "
             "seed, against 99.11 % at worst for step 12's. The gain in the mean was below the 0.05 % we had set "
             "beforehand as a clear one, and the same change at under 6,000 parameters had lost 0.08 % on the same "
             "split (step 13's notes); it was trained on the test seeds as the best-supported candidate of the "
             "screen, and the test set did not bear it out. 3. Training accuracy fell from 99.53 to 99.41 %: with "
             "the same parameters and 1.8× the multiply-adds the network fits its training images less well, so "
             "the extra positions did not turn into usable capacity. 4. Steps 11, 13 and 14 are three changes "
             "picked on the validation split that lost on the test set; with a seed-to-seed spread of about 0.05 % "
             "per run, differences of a few hundredths are not resolved by 2–6 validation seeds.",
    notes="Chosen on the validation split: reports/validation/12-wide-end[layout=(...'conv3p:10','conv3p:16',"
          "'conv3p:16','conv3p:16'...)] (this layout, seeds 0–5) against reports/validation/12-wide-end (seeds 2–5) "
          "and 9-narrow-8k[layout=(...'conv3:10','conv3:16','conv3:16','conv3p:16'...)] (step 12's layout under its "
          "draft name, seeds 0 and 1). Screened at the same budget and not kept: a second pool after the second "
          "padded convolution (12-wide-end[layout=(...'conv3p:16','pool','conv3p:16'...)], 7,952 parameters), "
          "99.16, 99.15, 99.23 and 99.13 % (seeds 0–3).",
    known_miss="holds ≥ 99.4 % in each of the last 5 epochs on 3 of 5 seeds (seeds 2 and 3: 99.39, 99.31 %), and "
               "the mean final accuracy is 99.43 %, not ≥ 99.5 %",
    floor_misses=(2, 3),
    layout=("conv3:8", "conv3:10", "conv1:8", "pool", "conv3p:10", "conv3p:16", "conv3p:16", "conv3p:16", "gap", "conv1:10"),
    seeds=SEEDS,  # step 12 has ten
)

_weight_decay = replace(
    _wide_end,
    name="15-weight-decay",
    parent="12-wide-end",
    changes=("weight_decay", "schedule"),
    target="Step 12's network and recipe with weight decay 5e-4, and the learning-rate anneal ending at epoch 13 "
           "instead of 10, so that the decay has three more epochs at a learning rate large enough to act. The first "
           "candidate to pass the k-fold screen (python -m ablation screen) that we set before screening.",
    result="The dips come while the anneal is still ending (it reaches its floor at epoch 13). A run took longer "
           "while a screen shared the cores than with a core to itself.",
    analysis="1. A failure, kept as one, and the one the screen's minima had predicted: the test accuracy dips in "
             "epochs 11 and 12, while the learning rate is still falling towards its floor at epoch 13, and the "
             "floor, judged on epochs 11-15, fails on every seed. From epoch 13 on, every seed is at 99.48-99.54 %. "
             "2. The final accuracy is the tightest of any step (sd 0.01 %), but against step 12 with the same seeds "
             "it moved by −0.04, −0.03, +0.03, −0.02 and +0.09 % (mean +0.01 %): the +0.06 % the six folds showed "
             "did not carry over, and the mean, 99.498 %, misses 99.5 % by 0.002 %. 3. What it shows about the "
             "screen: a variant chosen on six folds by a rule fixed in advance, with a 95 % interval above zero, "
             "still gave no measurable gain on the test set. At this size the gains available are a few hundredths "
             "of a percent, below what six folds resolve (the rule passes a +0.05 % variant about a third of the "
             "time, and one that is no better 4-7 % of the time) and below what 5 test seeds resolve.",
    notes="Chosen on six held-out folds (seed 0, python -m ablation screen 12-wide-end --set schedule.final_epoch=13 "
          "--set weight_decay=5e-4): final held-out accuracy minus step 12's per fold +0.03, +0.03, +0.14, +0.12, "
          "+0.04, +0.02 % (mean +0.063 %, 95 % CI [+0.008, +0.118]), ahead on 6 of 6 folds; the rule, fixed before "
          "the screens, asks for +0.05 % and 5 of 6. Each knob alone, screened the same way, fell short: weight decay "
          "5e-4 +0.037 % (3 of 6 ahead), the anneal ending at epoch 13 +0.043 % (3 of 6). Written down before the "
          "test-set runs: on the folds the lowest accuracy over the last 5 epochs fell below step 12's on every fold "
          "(by 0.11-0.28 %, mean 0.16 %), a dip in epochs 11-12 while the learning rate is still falling, so the "
          "floor may fail on the test set where the final accuracy gains. Nine screens were completed in all (the "
          "report's 'Screens across folds'); at a 4-7 % chance per screen of passing a variant that is no better, "
          "chance alone gives at least one pass in nine a third to a half of the time. After this step the rule also "
          "gates on the lowest accuracy of the last 5 epochs (screen.Rule); under that gate this screen fails, and the "
          "report's table of screens judges it so.",
    known_miss="holds ≥ 99.4 % in each of the last 5 epochs on none of 5 seeds (minima 99.27, 99.29, 99.27, 99.13, "
               "99.26 %, in epochs 11-12), and the mean final accuracy is 99.498 %, not ≥ 99.5 %",
    floor_misses=(0, 1, 2, 3, 4),
    weight_decay=5e-4,
    schedule=replace(_wide_end.schedule, final_epoch=13),
    seeds=SEEDS,  # step 12 has ten
)

_weight_average = replace(
    _weight_decay,
    name="16-weight-average",
    parent="15-weight-decay",
    changes=("ema",),
    target="Step 15's recipe, evaluated and saved as a moving average of its weights (decay 0.998 per iteration, "
           "about the last 500 updates, one epoch; BatchNorm's statistics averaged alike): the dips of epochs 11-12, which broke "
           "step 15's floor while the learning rate was still falling, are noise of the last few hundred updates, "
           "and an average over them should not dip, while the live model trains exactly as before.",
    result="The training accuracy is the live model's, not the average's. The times vary with two to four "
           "trainings sharing the two cores.",
    analysis="Points 1-4 were written on seeds 0-4; point 5 adds seeds 5-9. 1. The average did what it was for: "
             "against step 15 with the same seeds the lowest accuracy of the last "
             "5 epochs rose on every seed, by +0.23, +0.08, +0.17, +0.30 and +0.15 % (mean +0.19 %, the folds had "
             "shown +0.17 %), and the floor now holds on 4 seeds instead of none. 2. It did not remove the dip: "
             "each seed's lowest accuracy of the last five is still in epoch 11 or 12, and on seed 1 both stay under "
             "99.4 %, so the goal fails on that seed. 3. The final accuracy moved by +0.02, −0.03, +0.04, 0.00 and +0.01 % against "
             "step 15 (mean +0.01 %) and by −0.02, −0.06, +0.07, −0.02 and +0.10 % against step 12 (mean +0.01 %): "
             "the mean over seeds 0-4, 99.506 %, was the first of an 8k step at or above 99.5 %, but by less than its "
             "own standard error (0.013 %), and the +0.07 % the folds showed against step 12 did not carry over. 4. What is left "
             "between this step and the goal is the anneal still falling in epochs 11-12; ending it at epoch 10 "
             "(step 12) holds the floor but loses the 0.01 %. Neither is a real difference at five seeds. 5. Seeds 5-9, "
             "trained a later session so that the 8k recipes of steps 12, 16, 17 and 18 are all compared over the same "
             "ten seeds (this step had failed its goals on seeds 0-4, so more seeds could not turn it into a pass), "
             "averaged 99.488 % and seed 6 dipped to 99.34 % in epoch 11: over ten seeds the mean, 99.497 %, falls "
             "under 99.5 %, and against step 12 the final accuracy moved by +0.006 % on average (standard error "
             "0.020 %), the same as step 17's −0.001 %. Every one of the ten seeds has its lowest of the last five in epoch 11 or 12.",
    notes="Chosen on six held-out folds (seed 0). Against step 15 (python -m ablation screen 15-weight-decay --set "
          "ema=0.998): final held-out accuracy +0.01, +0.02, +0.01, −0.03, +0.00, +0.05 % (mean +0.010 %, ahead on 4 "
          "of 6), which fails the rule's +0.05 %, while the lowest accuracy of the last 5 epochs rose on every fold "
          "(by 0.09–0.30 %, mean +0.17 %), the change it was made for. Against step 12, the last step that holds "
          "the floor on every test seed (python -m ablation screen 12-wide-end --set schedule.final_epoch=13 --set "
          "weight_decay=5e-4 --set ema=0.998, the same runs): +0.04, +0.05, +0.15, +0.09, +0.04, +0.07 % (mean "
          "+0.073 %, 95 % CI [+0.029, +0.118]), ahead on 6 of 6, lowest of the last 5 epochs +0.008 % on average "
          "(below step 12's on folds 0, 1 and 4): it passes the rule, which since step 15 also gates on that "
          "minimum. Said plainly: the comparison with step 12 was decided after folds 0 and 1 of the averaged runs "
          "had been seen, because a step that only steadies its parent cannot pass a rule that asks for a gain "
          "over it; the rule itself was not changed. Engine-level change: the average is Step.ema (train.py), off "
          "for every earlier step, whose records it reproduces bit for bit (tests/golden).",
    known_miss="holds ≥ 99.4 % in each of the last 5 epochs on 8 of 10 seeds (seed 1: 99.37 %, seed 6: 99.34 %, both "
               "in epoch 11), and the mean final accuracy is 99.497 %, not ≥ 99.5 %",
    floor_misses=(1, 6),
    ema=0.998,
    # Seeds 5-9 were trained a session after 0-4, when steps 12, 17 and 18 already had ten.
    seeds=tuple(range(10)),
)

_long_anneal = replace(
    _wide_end,
    name="17-average-long-anneal",
    parent="12-wide-end",
    changes=("schedule", "ema"),
    target="Step 12 with the learning rate annealing over all 15 epochs instead of 10, and its weights averaged as in "
           "step 16 (EMA 0.998): the longer anneal gives the weights five more epochs of useful updates, and the "
           "average is there to keep the last five epochs, now all still annealing, from dipping. No weight decay.",
    result="The training accuracy is the live model's. Four trainings shared the two cores.",
    analysis="1. Five seeds said pass and ten say fail: seeds 0-4 held the floor with a mean of 99.510 %, seeds 5-9 "
             "averaged 99.47 % and two of them ended or dipped at 99.38 %. Over ten seeds the mean, 99.490 ± 0.019 % "
             "(standard error), is step 12's 99.49 % again, so the held-out gain (+0.06 % on six folds) did not carry "
             "over, as with steps 14-16. 2. Against step 12 over the same ten seeds the final accuracy moved by −0.001 % "
             "on average (per seed from −0.13 to +0.11 %), and against step 16 (seeds 0-4) by +0.00 %: the three "
             "7,952-parameter recipes of steps 12, 16 and 17 cannot be told apart on the test set. 3. The average did keep "
             "an anneal that runs to the last epoch from dipping: each seed's last five epochs span at most 0.08 %, "
             "against 0.20-0.39 % for step 15 without the average. What fails is the level: 99.49 % leaves the "
             "99.4 % floor only 0.09 %, about 1.5 standard deviations of one run (0.06 %), below it, so over ten seeds "
             "one or two runs land under it. 4. At 7,952 parameters the goal as set (every seed ≥ 99.4 % in each of the last 5 "
             "epochs and a mean ≥ 99.5 %) sits at the edge of what this family reaches: it is met or missed by the "
             "draw of seeds, not by the recipe.",
    notes="Chosen on six held-out folds (seed 0, python -m ablation screen 12-wide-end --set schedule.final_epoch=15 "
          "--set ema=0.998): final held-out accuracy minus step 12's +0.04, +0.01, +0.10, +0.15, +0.06, −0.01 % (mean "
          "+0.058 %, 95 % CI [−0.004, +0.120]), ahead on 5 of 6, lowest of the last 5 epochs +0.03 % on average: it "
          "passes the rule. The anneal ending at epoch 15 without the average had gained as much (+0.058 %, ahead "
          "on 4 of 6) with minima 0.08 % lower. Screened after step 16's test runs, as the other way of spending "
          "the late epochs that the screens of the last stop had left open; two candidates passing in three screens "
          "of this stop is more than the rule's 4-7 % false-pass rate would give by chance alone, but each gain is "
          "within what the test set's five seeds cannot resolve. Seeds 5-9 were added after seeds 0-4 had met the "
          "goals, and before they were trained it was fixed that the goals are judged over all ten: a mean 0.01 % "
          "above the bar, with a standard error of 0.017 %, is not yet a result. Screened after this step, and not "
          "passing, so with no test-set run: an elastic distortion added to the augmentation (Augment.elastic, a "
          "random displacement at a 4x4 grid of points, smoothed bicubically), against step 12 at ±1 pixel +0.028 % "
          "(ahead on 4 of 6 folds) and at ±2 pixels −0.012 % (2 of 6), and against step 13 at ±2 pixels −0.027 % "
          "(2 of 6). At ±2 the training accuracy fell from 99.5 to 98.5 % while the held-out accuracy stayed: the "
          "network cannot fit the harder images in 15 epochs, and it does not generalise better for seeing them. "
          "Also screened then, and not passing: the pool moved after three 3x3 convolutions instead of two (a "
          "different pooling position, one of issue 6's suggestions; conv3:8, conv3:8, conv3:8, pool, conv3:10, "
          "conv3:14, conv3:16, conv3p:16, 7,844 parameters), +0.018 % against step 12 (ahead on 4 of 6 folds), and at "
          "6k (conv3:8, conv3:8, conv3:8, pool, conv3:8, conv3:12, conv3:14, conv3p:12, 5,948 parameters), −0.022 % "
          "against step 13 (2 of 6).",
    known_miss="holds ≥ 99.4 % in each of the last 5 epochs on 8 of 10 seeds (seeds 5 and 7: 99.38 %), and the "
               "mean final accuracy over the ten is 99.490 %, not ≥ 99.5 % (seeds 0-4 alone: every goal met)",
    floor_misses=(5, 7),
    seeds=tuple(range(10)),
    schedule=replace(_wide_end.schedule, final_epoch=15),
    ema=0.998,
)

# The image and its four one-pixel shifts (dx, dy): what step 18 averages over at evaluation.
SHIFTS_4 = ((1, 0), (-1, 0), (0, 1), (0, -1))

_shifted_views = replace(
    _wide_end,
    name="18-shifted-views",
    confirmation_seeds=CONFIRMATION_SEEDS,
    parent="12-wide-end",
    changes=("tta",),
    target="Step 12 trained exactly as it is, and evaluated over five views of each image: itself and its copies "
           "moved one pixel left, right, up and down, averaging the softmax (test-time augmentation). The weights are "
           "step 12's, bit for bit; what changes is what a prediction is. Training's ±7° rotations already move a stroke "
           "near the border by 1-2 pixels, so a one-pixel shift makes an image of a kind the network has seen, "
           "and a digit that one view gets wrong by a hair the other four can outvote. It costs five forward passes per image, no parameters.",
    result="Evaluated over 5 views (4.2 million multiply-adds per test image instead of 0.84). Each seed's "
           "saved weights are step 12's, bit for bit. Two trainings shared the two cores.",
    analysis="1. Against step 12 on the same ten seeds, that is on the very same weights, the final accuracy moved by "
             "−0.01 to +0.06 % (mean +0.024 %, 95 % CI [+0.008, +0.040]), ahead on 8 of 10 and level on one: the "
             "first gain since step 2 whose interval on the test set excludes zero, and half the +0.050 % the folds "
             "had shown, as expected of the best of twelve comparisons. 2. Each seed's lowest accuracy of the last 5 "
             "epochs rose on 7 of 10 seeds (+0.025 % on average; seeds 0 and 7 −0.01, seed 9 −0.04); the three seeds that held step 12's floor by 0.01 % "
             "(2, 4 and 8) now hold it by 0.03-0.08 %. 3. The pass is narrow: the mean is 0.015 % above the bar with "
             "a standard error of 0.014 %, and seed 7 holds the floor by one image. Of the 252 ways to draw five of "
             "these ten seeds, 225 meet every goal, against 81 for step 12. 4. This is the fourth candidate of "
             "this family to reach the test set after passing the screen; steps 15-17 did not carry their gains "
             "over. A choice repeated against the same test set can find a pass by chance, so this one counts for "
             "what it is: a change whose size (a few images in 10,000) is at the resolution of ten seeds, on top of "
             "a recipe (step 12) that already held the floor on every seed. 5. The price is inference compute, "
             "five forward passes per image; the network, its parameters and its training are step 12's.",
    notes="Chosen on the six held-out folds, never on the test set. First offline, from the saved final weights of "
          "the fold runs of steps 12, 13 and 17 (build-time script, not part of the package): four ways to vote "
          "(these four shifts averaging the softmax or the logits, all eight one-pixel shifts, rotations of ±5°) "
          "on three steps, twelve comparisons, of which this one on step 12 looked best (+0.050 %); on step 13 it "
          "gave +0.028 % and on step 17 +0.018 %. Then as a screen (python -m ablation screen 12-wide-end --set "
          "\"tta=((1,0),(-1,0),(0,1),(0,-1))\"), which trained the six fold runs again to judge every epoch: final "
          "held-out accuracy minus step 12's +0.00, +0.04, +0.13, +0.07, +0.02, +0.04 % (30 images over 60,000: "
          "+0.050 % exactly, 95 % CI [+0.002, +0.098]), ahead on 5 of 6, lowest of the last 5 epochs +0.027 % on "
          "average. That is the rule's bar exactly, not a margin over it, and it was picked as the best of twelve, "
          "so the gain is more likely to be overstated than not. The screen at first printed +0.050 and 'fails': "
          "the mean of float32 percentages came out at +0.04999917. Bars are now judged within float noise "
          "(analysis.at_least), a fix made after, and because of, this screen; it changed no other screen's verdict "
          "(of 23), and of the goal verdicts it changed only how many five-seed draws of step 12 meet every goal "
          "(81 of 252, not 76). The retrained fold runs have step "
          "12's final weights bit for bit. Seeds 0-9 were fixed before any test-set run, to pair with step 12's ten, "
          "and are not extended after the result. At 6k the same screen against step 13 gave −0.01, +0.03, +0.02, "
          "−0.02, +0.03, +0.12 % (mean +0.028 %, ahead on 4 of 6) and fails; step 19 adds two turned views at 6k.",
    known_miss=None,  # step 12's miss (the mean) is not inherited: these runs meet every goal
    floor_misses=(),
    tta=SHIFTS_4,
)

_views6k = replace(
    _wide_end6k,
    name="19-views-6k",
    parent="13-wide-end-6k",
    changes=("tta", "tta_rotations"),
    target="Step 13 (5,984 parameters) trained exactly as it is, and evaluated over seven views of each image: "
           "itself, its four one-pixel shifts (step 18's) and its turns by ±5°, averaging the softmax. Training's "
           "±7° rotations make turned digits images of a kind the network has seen; the views cost seven forward "
           "passes per image and no parameters.",
    result="Evaluated over 7 views (5.2 million multiply-adds per test image instead of 0.75). Each seed's saved "
           "weights are step 13's, bit for bit. Two trainings shared the two cores.",
    analysis="1. Against step 13 on the same weights the final accuracy rose on every seed, by +0.08, +0.03, +0.09, "
             "+0.02 and +0.02 % (mean +0.048 %, 95 % CI [+0.006, +0.090]), as much as the folds had shown (+0.050 %), "
             "and each seed's lowest of the last 5 epochs by +0.01 to +0.08 % (mean +0.034 %). At 6k the views gain "
             "twice what step 18's four shifts gained at 8k (+0.024 %). 2. It is not enough: the floor now holds on 3 "
             "of 5 seeds instead of 2 (seed 2 reaches 99.39 % in epoch 12, seed 3 99.37 % in epoch 15), and the mean, "
             "99.452 %, is 0.05 % short of 99.5 %, about the 6k-to-8k difference in capacity that no change tried at "
             "6k has bought. 3. The ≤ 6,000-parameter goal is not met by this step or any other; its mean is the "
             "highest at 6k, level with 10-narrow-6k's (99.44 %), which holds the floor on one seed more (4 of 5): "
             "within one run's spread of each other.",
    notes="Chosen on the six held-out folds, never on the test set. Offline first, from the saved final weights of "
          "step 13's fold runs (build-time script): the four shifts alone +0.028 % (ahead on 4 of 6), ±5° alone "
          "+0.037 % (6 of 6), both together +0.050 % (5 of 6), the thirteenth comparison of views on the folds. Then "
          "as a screen (python -m ablation screen 13-wide-end-6k --set \"tta=((1,0),(-1,0),(0,1),(0,-1))\" --set "
          "\"tta_rotations=(5.0,-5.0)\"), which trained the six fold runs again: final held-out accuracy minus step "
          "13's +0.03, +0.07, +0.05, +0.00, +0.03, +0.12 % (mean +0.050 %, 30 images over 60,000, 95 % CI [+0.006, "
          "+0.094]), ahead on 5 of 6, lowest of the last 5 epochs +0.038 % on average: it passes the rule, at its "
          "bar exactly. Fixed before any test-set run: seeds 0-4, paired with step 13's; if they meet every goal, "
          "seeds 5-9 are trained too and the goals judged over all ten. They did not, so there are five. Screened "
          "later against this step, with the same seven views, and not passing: three layouts that keep step 12's "
          "8k body after the pool (10, 16, 16) and pay for it with a cheaper convolution, fixed in advance and "
          "screened in this order. Step 12's last convolution depthwise-separable and 14 wide (5,992 parameters): "
          "−0.09, +0.04, −0.06, +0.07, +0.02, −0.01 % (mean −0.005 %, 95 % CI [−0.069, +0.059]), ahead on 3 of 6. "
          "Its padded 3x3 replaced by a 1x1 expansion to 20 channels before the global average pooling (5,976): −0.08, −0.12, "
          "+0.02, +0.03, −0.17, −0.03 % (mean −0.058 %, [−0.142, +0.025]), ahead on 2 of 6. Its third convolution after the pool "
          "depthwise-separable and the last one 15 wide (5,892): −0.10, −0.02, −0.04, +0.02, −0.02, −0.05 % (mean "
          "−0.035 %, [−0.077, +0.007]), ahead on 1 of 6. Then, with a new layout token, step 12's network itself "
          "with its last convolution tied to the one before it (tied3p:16: the same 16→16 kernel applied again, "
          "padded, with its own BatchNorm; 5,648 parameters and step 12's 0.84 million multiply-adds per view): "
          "−0.14, +0.07, −0.03, +0.02, −0.12, +0.04 % (mean −0.027 %, [−0.118, +0.064]), ahead on 3 of 6. Last, "
          "that tied network widened to spend the budget (9 after the pool, then 17, 17 and the tied 17; 5,824 "
          "parameters): −0.13, +0.07, +0.02, +0.03, −0.11, +0.16 % (mean +0.007 %, [−0.109, +0.122]), ahead on 4 "
          "of 6. Five ways of keeping the 8k network's width at 6k, none distinguishable from step 13's narrower "
          "layout. A sixth, a session later, applied that tied 17→17 kernel a third time (two tied layers: depth for "
          "the 34 parameters of one more BatchNorm; 5,858 parameters): −0.03, +0.04, −0.16, −0.05, −0.10, +0.00 % (mean −0.050 %, "
          "[−0.125, +0.025]), ahead on 1 of 6, the lowest of the last 5 epochs −0.043 % on average. In the same "
          "session, batch 256 with the learning rate scaled with it (lr 0.4; python -m ablation screen 19-views-6k "
          "--set batch_size=256 --set lr=0.4), because batch 64 had lost at 6k (−0.06 % on the folds against step "
          "13) and a network this size may lack capacity rather than gradient noise: −0.11, +0.06, −0.09, −0.07, "
          "+0.01, −0.13 % (mean −0.055 %, [−0.133, +0.023]), ahead on 2 of 6. Batch 128 with lr 0.2 stays. "
          "Larger sets of views, measured in the same session on this step's saved fold weights without training "
          "(python -m ablation screen 19-views-6k --set \"tta=(...)\" --set \"tta_rotations=(...)\" --preview), against "
          "the seven, mean over the six folds: turns of ±5° and ±10° −0.003 %; ±3° and ±6° +0.002 %; ±4° and ±8° "
          "+0.002 %; the four diagonal shifts added −0.012 %; the four two-pixel shifts added −0.013 %; the diagonal "
          "shifts and ±10° −0.020 % (ahead on at most 3 of 6): the views are spent at seven. Nor does another recipe "
          "gain with them: the seven views on the saved fold weights of nine 6k variants screened earlier (weight "
          "decay, the anneal's end, the weight average, batch 64, label smoothing, SAM, clean late epochs, the "
          "elastic distortion; build-time script) gave held-out means of 99.24-99.35 %, none above this step's "
          "99.357 %.",
    known_miss="holds ≥ 99.4 % in each of the last 5 epochs on 3 of 5 seeds (seed 2: 99.39 %, seed 3: 99.37 %), "
               "and the mean final accuracy is 99.452 %, not ≥ 99.5 %",
    floor_misses=(2, 3),
    tta=SHIFTS_4,
    tta_rotations=(5.0, -5.0),
)

BEYOND_STEPS = (_bs128, _onecycle, _no_dropout, _narrow8k, _narrow6k, _no_jitter, _wide_end, _wide_end6k, _padded8k,
                _weight_decay, _weight_average, _long_anneal, _shifted_views, _views6k)

STEPS: dict[str, Step] = {s.name: s for s in SEED_STEPS + BEYOND_STEPS}
# The step the mission's verdict is judged on (and `--steps final`): the last of the ≤ 8,000-parameter line,
# which met every goal. Step 19, a ≤ 6,000-parameter attempt, is not it unless it meets the mission too.
FINAL_STEP = "18-shifted-views"


def with_overrides(step: Step, assignments: list[str]) -> Step:
    """A variant of `step` with fields set from 'field=value' strings ('schedule.final_epoch=12' for nested).

    The variant is named after them ('7-onecycle[lr=0.1]'), so its records never mix with the step's; the
    name is text, never a path (records.py files it under a folder name of its own). Every value is checked
    by the dataclasses; a ValueError names the first that is refused.
    """
    import ast

    if not assignments:
        return step
    for text in assignments:
        key, sep, raw = text.partition("=")
        if not sep:
            raise ValueError(f"override {text!r} is not field=value")
        try:
            value = ast.literal_eval(raw)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            value = raw  # a bare word such as sgd or bilinear: the field's check judges it as text
        head, _, sub = key.partition(".")
        if head not in {f.name for f in fields(Step)} or head in {"name", "parent", "changes"}:
            raise ValueError(f"override {text!r}: {head!r} is not a step field")
        if sub:
            inner = getattr(step, head)
            if not is_dataclass(inner) or sub not in {f.name for f in fields(inner)}:
                raise ValueError(f"override {text!r}: {type(inner).__name__} has no field {sub!r}")
            value = replace(inner, **{sub: value})
        step = replace(step, **{head: value})
    if step.distill.active and step.distill.teacher not in STEPS:
        raise ValueError(f"distill.teacher={step.distill.teacher!r} is not allowed: a registered step's name "
                         f"(its records teach)")
    return replace(step, name=f"{step.name}[{','.join(assignments)}]")


def get_step(name: str) -> Step:
    """The step called `name`; "final" names FINAL_STEP."""
    try:
        return STEPS[FINAL_STEP if name == "final" else name]
    except KeyError:
        raise KeyError(f"unknown step {name!r}; known steps: {', '.join(STEPS)}") from None
