"""``generate()``: a synthetic micro-expression dataset in a real layout, with its ground truth.

Per subject (seeded by ``(seed, subject index)``, so adding subjects leaves earlier ones
unchanged): a face shape, an appearance of the texture, an expressivity factor. Per clip (seeded
by ``(seed, subject index, clip index)``): a class (classes rotate through the subject's clips,
so every subject shows every class about equally often — LOSO folds stay balanced), an AU
combination of that class, an amplitude per AU, distractor AUs with their amplitudes (they follow
the expression's time course), frame numbers, head motion (rigid, plus the residual of an
out-of-plane turn), maybe a blink, image noise. Clip timing: onset→offset lasts 0.15–0.4 s (apex at 30–60 % of it), with 2–8 frames before
the onset and after the offset; at the default 200 fps that is 38–96 frames per clip.

``ground_truth.json`` at the dataset root::

    {"layout", "dataset", "fps", "seed", "difficulty", "subjects", "clips_per_subject",
     "classes": [...], "components": k7 names,
     "clips": {"<dataset>/<subject>/<clip>": {"subject", "label", "aus", "amplitudes_px",
               "components", "distractor_aus", "distractor_amplitudes_px", "blink", "blink_px",
               "residual_head_px", "onset", "apex", "offset"}},
     "relations": {class: K×K},          # relevance: what the class is defined by
     "motion_relations": {class: K×K}}   # co-activation of everything that moved

Two ground truths, one construction. For a displacement field ``f`` (an AU's, the blink's, the
residual head motion's) let ``m_f[k]`` = Σ_{i∈k} |f(i)| / Σ_i |f(i)|, the share of its landmark
motion in component k. A clip's component activation is ``a[k] = Σ_f amplitude_f · m_f[k]``
(amplitude = the px displacement of the field's strongest landmark at its peak, expressivity
included). Its K×K co-activation (:func:`coactivation`) is ``s sᵀ`` with the shares ``s = a / Σ a``:
entry (i, j) is large when components i and j both carry much of the clip's motion. A class's
matrix is the mean over its clips (symmetric; entries sum to 1).

- ``relations`` (**relevance**, what models are scored against): ``a`` sums the class-defining AUs
  only — the component pairs the class is defined by. A pair with a component the class never
  uses scores 0.
- ``motion_relations``: ``a`` sums everything that moved non-rigidly — class AUs, distractor AUs,
  the blink, the residual head motion (the rigid head motion is left out: alignment removes it).
  It is what a read-out of the input motion can see at best; a model's relations add something
  only where they agree with ``relations`` better than this does.

The standard dataset (``standard_dataset()``): casme2 layout, 16 subjects × 10 clips (each
subject shows each of the 5 classes twice), standard difficulty (class AUs of 1–2 px, four
distractor AUs of 1.5–3 px in every clip, blinks in 15 %, residual head motion up to 0.5 px),
200 fps, seed 0 — about 10 500 frames, 300 MB of JPEG, ≈ 26 s of CPU to generate (≈ 2.5 ms per
frame including JPEG writing; rendered by 2 processes; measured on ``standard-v3``).

``ground_truth_landmarks/<key>.npz`` holds each clip's landmark series as a
:class:`landmarks.LandmarkTrack` (backend "synth": the rendered positions plus landmark noise).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from geomer.errors import GeomerError
from landmarks.files import check_output_folder
from geomer.graph import FaceGraph
from geomer.synth.aus import action_unit
from geomer.synth.emotions import class_table, distractor_pool, sample_distractors
from geomer.synth.face import FRAME_SIZE, subject_shape
from geomer.synth.layouts import ClipPlan, get_layout
from geomer.synth.motion import (
    apply_rigid,
    blink_course,
    blink_field,
    difficulty as get_difficulty,
    expression_course,
    head_motion,
    residual_head_motion,
)
from geomer.synth.render import Appearance, FaceRenderer, texture_face

STANDARD_VERSION = "standard-v4"
STANDARD_SIZE = {"subjects": 16, "clips": 10}


def field_shares(field: np.ndarray) -> np.ndarray:
    """[K] share of a [68, 2] displacement field's landmark motion in each k7 component (zeros
    for a still field)."""
    graph = FaceGraph("k7")
    norms = np.linalg.norm(field, axis=1)
    shares = np.array([norms[graph.node_ids[graph.component == k]].sum() for k in range(graph.num_components)])
    total = shares.sum()
    return shares / total if total > 0 else shares


def au_activation(codes, amplitudes_px) -> np.ndarray:
    """[K] component activation ``Σ amplitude · m_u`` of AUs (module docstring)."""
    k = FaceGraph("k7").num_components
    return sum((a * field_shares(action_unit(u).field) for u, a in zip(codes, amplitudes_px)), np.zeros(k))


def coactivation(activation: np.ndarray) -> np.ndarray:
    """A clip's component co-activation: the outer product of its motion shares.

    Shapes: activation [..., K] (non-negative) → [..., K, K] symmetric, entry (i, j) =
    ``s_i · s_j`` with ``s = a / Σ a`` (so entries sum to 1); all zero when nothing moved.
    """
    activation = np.asarray(activation, np.float64)
    total = activation.sum(axis=-1, keepdims=True)
    share = np.divide(activation, total, out=np.zeros_like(activation), where=total > 0)
    return share[..., :, None] * share[..., None, :]


def relation_matrices(activations, classes: list[str]) -> dict[str, np.ndarray]:
    """Per-class K×K ground truth: the clips' :func:`coactivation`, averaged over the class.

    ``activations``: (class name, [K] activation) per clip; a ``ClipPlan`` counts its own AUs.
    A class without clips gets all zeros.
    """
    k = FaceGraph("k7").num_components
    totals = {name: np.zeros((k, k)) for name in classes}
    counts = dict.fromkeys(classes, 0)
    for item in activations:
        if isinstance(item, ClipPlan):
            label, activation = item.label, au_activation(item.aus, item.amplitudes_px)
        else:
            label, activation = item
        totals[label] += coactivation(activation)
        counts[label] += 1
    return {name: (totals[name] / max(counts[name], 1)).astype(np.float32) for name in classes}


def _check_args(subjects: int, clips: int, fps: float, seed: int) -> None:
    if seed < 0:  # numpy's seed sequences take non-negative integers only
        raise GeomerError(f"--seed must be at least 0, got {seed}")
    if subjects < 1:
        raise GeomerError(f"--subjects must be at least 1, got {subjects}")
    if clips < 1:
        raise GeomerError(f"--clips must be at least 1, got {clips}")
    if not 10 <= fps <= 1000:
        raise GeomerError(f"--fps must be between 10 and 1000, got {fps}")


_TEMP_SUFFIX = ".tmp-"


def _temp_name(out: Path, pid: int) -> Path:
    """Where the process ``pid`` builds ``out`` before publishing it."""
    return out.parent / f"{out.name}{_TEMP_SUFFIX}{pid}"


def _remove_stale_temp_folders(out: Path) -> None:
    """Remove the temp folders that killed runs (pids no longer alive) left beside ``out``;
    a live run's folder is left alone."""
    from landmarks.pool import process_alive

    prefix = f"{out.name}{_TEMP_SUFFIX}"
    if not out.parent.is_dir():
        return
    for entry in out.parent.iterdir():
        pid = entry.name[len(prefix):]
        if entry.name.startswith(prefix) and pid.isdigit() and entry.is_dir() and not process_alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


def _temp_folder(out: Path) -> Path:
    _remove_stale_temp_folders(out)
    temp = _temp_name(out, os.getpid())
    if temp.exists():
        shutil.rmtree(temp)
    temp.mkdir(parents=True)
    return temp


def _check_output(out: Path) -> None:
    """One-line GeomerError, before any work, unless ``out`` (and the temp folder beside it) can
    be created: no file in the way, a writable parent, names the file system accepts."""
    if out.is_symlink():  # the finished dataset replaces ``out``: a link would be replaced, not followed
        raise GeomerError(f"{out}: is a symbolic link; name the folder it points to, or a new folder")
    check_output_folder(out, "output folder", GeomerError)
    # the dataset is built beside ``out`` and moved into its place: never the current folder (or
    # one holding it), which cannot be replaced while it is in use
    with contextlib.suppress(FileNotFoundError):  # a current folder deleted meanwhile holds nothing
        if Path.cwd().is_relative_to(out.resolve()):
            raise GeomerError(f"{out}: is the current folder or holds it; name a new folder")
    if out.exists() and any(out.iterdir()):
        raise GeomerError(f"{out}: already exists and is not empty; remove it or choose another folder")
    # the temp name is the longest name written; pid_max is at most 2**22 (7 digits)
    if len(os.fsencode(_temp_name(out, 4_194_304).name)) > 255:
        raise GeomerError(f"{out}: the folder name is too long (at most {255 - 7 - len(_TEMP_SUFFIX)} bytes)")


def _check_room(out: Path, temp: Path, done: int, total: int, slack: float = 1.0) -> None:
    """One-line GeomerError when the rest of the dataset will not fit on the disk: the size of
    what ``temp`` holds after its first ``done`` of ``total`` clips, per clip, times the clips
    still to come, against the free space times ``slack``. Checked then, not guessed before: the
    size per clip depends on the layout, the frame rate and the drawn clip lengths (which vary
    about threefold, hence the slack of the check after one clip)."""
    written = sum(path.stat().st_size for path in temp.rglob("*") if path.is_file())
    needed = written / done * (total - done)
    free = shutil.disk_usage(temp).free
    if needed > free * slack:
        raise GeomerError(
            f"{out}: the dataset needs about {written / done * total / 1e9:.1f} GB (its first "
            f"{'clip' if done == 1 else f'{done} clips'} took {written / 1e6:.0f} MB) and {free / 1e9:.1f} GB "
            f"are free; fewer --subjects or --clips, or another folder"
        )


def _publish(temp: Path, out: Path) -> None:
    """Move the finished dataset into place; an empty existing ``out`` is replaced."""
    try:
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        os.replace(temp, out)
    except OSError as error:
        shutil.rmtree(temp, ignore_errors=True)
        raise GeomerError(f"{out}: cannot put the generated dataset there ({error.strerror})") from error


def _render_subject(
    temp: Path, layout: str, s: int, clips: int, seed: int, difficulty: str, fps: float,
    after_first_clip: Callable[[], None] | None = None,
) -> list[tuple[ClipPlan, dict, np.ndarray]]:
    """Render subject ``s``'s clips into ``temp``; returns (plan, ground truth, [K] activation of
    everything that moved) per clip. ``after_first_clip`` is called once its first clip is
    written (the disk-space check: a subject of many clips must not fill the disk first)."""
    from landmarks.track import LandmarkTrack

    writer = get_layout(layout)
    level = get_difficulty(difficulty)
    table = class_table(writer.scheme)
    photo, photo_points = texture_face()
    subject_rng = np.random.default_rng([seed, s])
    dataset, subject = writer.subject_names(s)
    shape = subject_shape(subject_rng)
    texture, texture_points = Appearance.sample(subject_rng).apply(photo, photo_points)
    renderer = FaceRenderer(texture, texture_points, shape.points, image_noise=level.image_noise,
                            noise_seed=int(subject_rng.integers(2**32)))
    expressivity = float(np.clip(1.0 + subject_rng.normal(0, level.expressivity_sd), 0.5, 1.5))
    class_order = subject_rng.permutation(len(table))
    distractors_allowed = distractor_pool(writer.scheme)
    blink = blink_field(shape.points)
    component_names = FaceGraph("k7").component_names
    used_names: set[str] = set()
    results = []
    for c in range(clips):
        rng = np.random.default_rng([seed, s, c])
        emotion = table[class_order[c % len(table)]]
        aus = emotion.sample(rng)
        amplitudes = tuple(round(float(rng.uniform(*level.amplitude_px)) * expressivity, 3) for _ in aus)
        # distractors draw from their own stream: how many a level draws leaves every other draw
        # (clip names, timing, head motion) the same across levels
        distractor_rng = np.random.default_rng([seed, s, c, 1])
        distractors = sample_distractors(distractors_allowed, distractor_rng, level.distractor_probability,
                                         level.distractor_draws)
        distractor_amplitudes = tuple(
            round(float(distractor_rng.uniform(*level.distractor_amplitude_px)) * expressivity, 3)
            for _ in distractors
        )
        name = writer.clip_name(subject, c, rng, emotion.name)
        while name in used_names:  # drawn suffixes may repeat; clip ids must not
            name = writer.clip_name(subject, c, rng, emotion.name)
        used_names.add(name)
        duration = max(int(round(rng.uniform(0.15, 0.4) * fps)), 4)
        rise = max(int(round(duration * rng.uniform(0.3, 0.6))), 1)
        lead_in, lead_out = int(rng.integers(2, 9)), int(rng.integers(2, 9))
        first = writer.first_frame(rng)
        onset_pos, apex_pos, offset_pos = lead_in, lead_in + rise, lead_in + duration
        n_frames = offset_pos + lead_out + 1
        plan = ClipPlan(
            dataset=dataset, subject=subject, clip=name, label=emotion.name, aus=aus,
            amplitudes_px=amplitudes, first_frame=first, num_frames=n_frames,
            onset=first + onset_pos, apex=first + apex_pos, offset=first + offset_pos,
        )
        # fields peak at PEAK_IOD; rescaled so each AU's strongest landmark moves its amplitude (px)
        apex_displacement = sum(
            action_unit(u).field / np.linalg.norm(action_unit(u).field, axis=1).max() * a
            for u, a in zip(aus + distractors, amplitudes + distractor_amplitudes)
        )
        course = expression_course(n_frames, onset_pos, apex_pos, offset_pos)
        closure = blink_course(rng, n_frames, fps, level)
        residual = residual_head_motion(rng, n_frames, shape.points, level)
        points = (
            shape.points[None]
            + course[:, None, None] * apex_displacement[None]
            + closure[:, None, None] * blink[None]
            + residual
        )
        points = apply_rigid(points, head_motion(rng, n_frames, level)).astype(np.float32)
        blink_peak = float(closure.max()) * blink
        residual_peak = residual[int(np.argmax(np.linalg.norm(residual, axis=2).max(axis=1)))]
        blink_px = float(np.linalg.norm(blink_peak, axis=1).max())
        residual_px = float(np.linalg.norm(residual_peak, axis=1).max())
        moved = (
            au_activation(aus + distractors, amplitudes + distractor_amplitudes)
            + blink_px * field_shares(blink_peak)
            + residual_px * field_shares(residual_peak)
        )
        noise_order = rng.integers(0, 2**16, n_frames)

        def render_at(position: int, points=points, noise_order=noise_order) -> np.ndarray:
            return renderer.render(points[position], int(noise_order[position]))

        writer.write_clip(temp, plan, render_at, points[onset_pos])
        observed = points + rng.normal(0, level.landmark_noise_px, points.shape).astype(np.float32)
        boxes = np.concatenate([observed.min(axis=1), observed.max(axis=1)], axis=1)
        LandmarkTrack(
            points=observed, valid=np.ones(n_frames, bool),
            frame_index=np.arange(first, first + n_frames), box=boxes, fps=fps,
            source=plan.key, backend="synth",
        ).save(temp / "ground_truth_landmarks" / f"{plan.key}.npz")
        components = sorted({k for u in aus for k in action_unit(u).components}, key=component_names.index)
        truth = {
            "subject": f"{dataset}/{subject}", "label": emotion.name, "aus": list(aus),
            "amplitudes_px": list(amplitudes), "components": components,
            "distractor_aus": list(distractors), "distractor_amplitudes_px": list(distractor_amplitudes),
            "blink": bool(closure.max() > 0), "blink_px": round(blink_px, 3),
            "residual_head_px": round(residual_px, 3),
            "onset": plan.onset, "apex": plan.apex, "offset": plan.offset,
        }
        results.append((plan, truth, moved))
        if c == 0 and after_first_clip is not None:
            after_first_clip()
    return results


def generate(
    out: str | os.PathLike,
    layout: str = "casme2",
    subjects: int = 4,
    clips: int = 5,
    seed: int = 0,
    difficulty: str = "standard",
    fps: float = 200.0,
    progress: bool = True,
    jobs: int = 1,
) -> Path:
    """Write a synthetic dataset in ``layout`` to ``out`` (atomically) and return its path.

    ``out`` must not exist or be an empty folder. See the module docstring for what is drawn.
    ``jobs`` > 1 renders subjects in that many processes; the output is identical either way.
    """
    from tqdm import tqdm

    from landmarks.pool import process_pool

    out = Path(out)
    writer = get_layout(layout)
    get_difficulty(difficulty)
    _check_args(subjects, clips, fps, seed)
    if jobs < 1:
        raise GeomerError(f"--jobs must be at least 1, got {jobs}")
    _check_output(out)
    classes = [c.name for c in class_table(writer.scheme)]
    texture_face()  # detect the photo's landmarks once, before worker processes fork

    temp = _temp_folder(out)
    try:
        per_subject: list[list[tuple[ClipPlan, dict, np.ndarray]]] = []
        with tqdm(total=subjects * clips, desc=f"synth {layout}", unit="clip", disable=not progress) as bar:
            # the first subject alone, then the check of the disk space from its size, before the
            # others start (rendered beside it, their files would count as its own); a rough
            # check after its first clip already stops a request that is far too large
            total = subjects * clips
            per_subject.append(_render_subject(temp, layout, 0, clips, seed, difficulty, fps,
                                               lambda: _check_room(out, temp, 1, total, slack=3.0)))
            bar.update(clips)
            _check_room(out, temp, clips, total)
            rest = range(1, subjects)
            if jobs == 1 or len(rest) <= 1:
                for s in rest:
                    per_subject.append(_render_subject(temp, layout, s, clips, seed, difficulty, fps))
                    bar.update(clips)
            else:
                with process_pool(min(jobs, len(rest))) as pool:
                    futures = [
                        pool.submit(_render_subject, temp, layout, s, clips, seed, difficulty, fps) for s in rest
                    ]
                    for future in futures:
                        per_subject.append(future.result())
                        bar.update(clips)
        plans = [plan for results in per_subject for plan, _, _ in results]
        clip_truth = {plan.key: truth for results in per_subject for plan, truth, _ in results}
        writer.finish(temp, plans)
        relations = relation_matrices(plans, classes)
        motion_relations = relation_matrices(
            [(plan.label, moved) for results in per_subject for plan, _, moved in results], classes
        )
        truth = {
            "layout": layout,
            # megc2019-flow is a composite: keys and subjects follow each clip's part (casme2/samm/smic)
            "dataset": None if layout == "megc2019-flow" else layout,
            "fps": fps,
            "seed": seed,
            "difficulty": difficulty,
            "subjects": subjects,
            "clips_per_subject": clips,
            "frame_size": list(FRAME_SIZE),
            "classes": classes,
            "components": list(FaceGraph("k7").component_names),
            "clips": clip_truth,
            "relations": {name: m.round(6).tolist() for name, m in relations.items()},
            "motion_relations": {name: m.round(6).tolist() for name, m in motion_relations.items()},
        }
        (temp / "ground_truth.json").write_text(json.dumps(truth, indent=1))
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    _publish(temp, out)
    return out


def standard_dataset(progress: bool = True, jobs: int = 2) -> Path:
    """The standard synthetic dataset (casme2 layout, 16 subjects × 10 clips, standard
    difficulty, 200 fps, seed 0), generated once under ``cache_root()/synth/standard-v4``
    (``standard-v3``, up to geomer 0.2.13, was the ``moderate`` level; :mod:`geomer.synth.motion`)."""
    from geomer.paths import cache_root

    out = cache_root() / "synth" / STANDARD_VERSION
    if (out / "ground_truth.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        return generate(out, layout="casme2", subjects=STANDARD_SIZE["subjects"],
                        clips=STANDARD_SIZE["clips"], seed=0, difficulty="standard", fps=200.0,
                        progress=progress, jobs=jobs)
    except GeomerError:
        if (out / "ground_truth.json").is_file():  # another process finished it first
            return out
        raise
