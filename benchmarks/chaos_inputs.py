"""The chaos check's hostile inputs (``benchmarks/chaos.py``): list files whose paths try to
leave ``--out`` or to overwrite their own sources, a binary list, and files whose loading would
run code (a pickle, a YAML tag) through every command that loads a file. Each returns table
rows; each works in its own sandbox."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path

from chaos_runs import SHORT_STEPS, Bench, Check, Row, checkpoint_dir, expect_one_error_line, run

# -- hostile list paths ----------------------------------------------------------------------


def _checksums(paths: list[Path]) -> dict[Path, str]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def _place(bench: Bench, target: Path, index: int) -> Path:
    """Copy training video ``index`` to ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(sorted((bench.root / "data" / "train").glob("*.mp4"))[index], target)
    return target


def _escaping_list(bench: Bench, box: Path) -> tuple[Path, Path, list[Path]]:
    """A list in ``lists/deep/`` whose entries are ``../../outside/a.mp4`` (relative, out of
    the list's folder), an absolute path, a path with spaces, a unicode path and a plain one;
    ``--out`` is a separate folder. Outputs placed by unsanitised relative paths land on the
    sources, outside ``--out``."""
    deep = box / "lists" / "deep"
    sources = [_place(bench, box / "outside" / "a.mp4", 0),
               _place(bench, deep / "abs" / "b.mp4", 1),
               _place(bench, deep / "with space" / "c d.mp4", 2),
               _place(bench, deep / "vidéo" / "日本.mp4", 3),
               _place(bench, deep / "e.mp4", 4)]
    listing = deep / "list.txt"
    listing.write_text(f"../../outside/a.mp4 0\n{shlex.quote(str(sources[1]))} 1\n"
                       f'"with space/c d.mp4" 0\nvidéo/日本.mp4 1\ne.mp4 0\n')
    return listing, box / "out", [*sources, listing]


def _out_at_lists_parent(bench: Bench, box: Path) -> tuple[Path, Path, list[Path]]:
    """``--out`` at the parent of the list's folder, an entry ``../vids/a.mp4``: its output
    path by relative placement is the source itself."""
    out = box / "out"
    sources = [_place(bench, out / "vids" / "a.mp4", 0), _place(bench, out / "data" / "b.mp4", 1)]
    listing = out / "data" / "list.txt"
    listing.write_text("../vids/a.mp4 0\nb.mp4 1\n")
    return listing, out, [*sources, listing]


def _out_is_lists_folder(bench: Bench, box: Path) -> tuple[Path, Path, list[Path]]:
    """``--out`` is the list's own folder, its videos in ``videos/``: the prepared list and
    videos would be written over the list and the videos."""
    out = box / "out"
    sources = [_place(bench, out / "videos" / name, i)
               for i, name in enumerate(("a.mp4", "b.mp4"))]
    listing = out / "list.txt"
    listing.write_text("videos/a.mp4 0\nvideos/b.mp4 1\n")
    return listing, out, [*sources, listing]


LAYOUTS: dict[str, tuple[Callable[[Bench, Path], tuple[Path, Path, list[Path]]], bool]] = {
    "../ out of the list's folder, absolute, spaces, unicode": (_escaping_list, True),
    "--out at the list's parent, entry ../vids/a.mp4": (_out_at_lists_parent, False),
    "--out is the list's own folder": (_out_is_lists_folder, False),
}


def hostile_lists(bench: Bench) -> list[Row]:
    """``prepare`` never writes outside ``--out`` and never changes a source's bytes (videos or
    list); a binary list is one line, exit 3."""
    rows = []
    for name, (layout, must_prepare) in LAYOUTS.items():
        box = bench.sandbox(f"prepare {name}")
        listing, out, sources = layout(bench, box.path)
        sums = _checksums(sources)
        before = box.snapshot()
        check = Check()
        done = run(["prepare", "--data", str(listing), "--out", str(out), "--workers", "1"],
                   box.path)
        if done.code == 0:
            prepared = sum(1 for p in out.rglob("*.mp4") if p not in sums)
            check.expect(not must_prepare or prepared == len(sources) - 1,
                         f"exit 0, {prepared} prepared")
        else:
            expect_one_error_line(check, done, "prepare", (2, 3))
        changed = [p.name for p, digest in _checksums(sources).items() if sums[p] != digest]
        check.expect(not changed, f"sources changed: {', '.join(changed)}" if changed
                     else "sources unchanged")
        box.expect_nothing_outside(check, before)
        rows.append(check.row(f"prepare, hostile list: {name}",
                              ("exit 0, every video prepared" if must_prepare else
                               "prepared, or refused in one line (exit 2/3)")
                              + "; inside --out only; sources' sha256 unchanged"))
    for command_name in ("prepare", "pretrain"):
        rows.append(_binary_list(bench, command_name))
    return rows


def _binary_list(bench: Bench, command_name: str) -> Row:
    box = bench.sandbox(f"binary list {command_name}")
    listing = box.path / "list.txt"
    listing.write_bytes(b"\xff\xfe\x00\x9c\x80 clip.mp4 0\n\xc3\x28 other.mp4 1\n")
    before = box.snapshot()
    check = Check()
    args = (["prepare", "--data", str(listing), "--out", str(box.out)] if command_name ==
            "prepare" else bench.pretrain(box.out, data=listing))
    done = run(args, box.path)
    expect_one_error_line(check, done, command_name, (3,))
    named = any(str(listing) in line for line in done.stderr.splitlines()
                if f"{command_name}: error:" in line)
    check.expect(named, f"{'names' if named else 'does not name'} the list")
    box.expect_nothing_outside(check, before)
    return check.row(f"{command_name}, binary (non-UTF-8) list",
                     "exit 3, one line naming the list")


# -- files that would run code ---------------------------------------------------------------


class Exploit:
    """Unpickling it runs ``touch MARKER``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def _yaml_payload(marker: Path) -> str:
    return f"run:\n  out: !!python/object/apply:os.system ['touch {marker}']\n"


class Payloads:
    """The hostile files of one sandbox, all aimed at one marker file."""

    def __init__(self, bench: Bench, folder: Path) -> None:
        import numpy as np
        import torch

        self.marker = folder / "PWNED"
        exploit = Exploit(self.marker)
        self.pth = folder / "evil.pth"  # an official-VideoMAE-shaped file
        torch.save({"model": {"patch_embed.proj.weight": torch.zeros(1)}, "payload": exploit},
                   self.pth)
        self.pt = folder / "evil.pt"
        shutil.copyfile(self.pth, self.pt)
        self.yaml = folder / "evil.yaml"
        self.yaml.write_text(_yaml_payload(self.marker))
        objects = np.empty(1, dtype=object)
        objects[0] = exploit
        self.npz = folder / "evil.npz"
        np.savez(self.npz, features=objects, labels=np.zeros(1, np.int64))
        self.npy = folder / "evil.npy"
        np.save(self.npy, objects)
        self.teacher = folder / "teacher"  # a DINOv2 folder whose weights are a pickle
        self.teacher.mkdir()
        (self.teacher / "config.json").write_text(json.dumps({
            "model_type": "dinov2", "hidden_size": 32, "num_hidden_layers": 1,
            "num_attention_heads": 4, "intermediate_size": 64, "image_size": 32,
            "patch_size": 8}))
        torch.save({"embeddings.cls_token": torch.zeros(1, 1, 32), "payload": exploit},
                   self.teacher / "pytorch_model.bin")
        self._reference, self._folder = bench.reference(), folder

    @functools.cached_property
    def run(self) -> Path:
        """A complete run folder whose newest state.pt is a pickle (copied when first used)."""
        run_folder = self._folder / "run"
        shutil.copytree(self._reference, run_folder)
        poison_state(checkpoint_dir(run_folder, SHORT_STEPS), Exploit(self.marker))
        return run_folder


def poison_state(checkpoint: Path, exploit: Exploit) -> None:
    """Replace a checkpoint's ``state.pt`` by a pickle carrying ``exploit``, with a manifest
    that matches (whoever can write the file can write the manifest)."""
    import torch

    from motionmae.fileio import sha256_file

    state = checkpoint / "state.pt"
    torch.save({"optimizer": {}, "train_state": {"step": SHORT_STEPS}, "payload": exploit},
               state)
    manifest = json.loads((checkpoint / "manifest.json").read_text())
    manifest["files"]["state.pt"] = {"size": state.stat().st_size, "sha256": sha256_file(state)}
    (checkpoint / "manifest.json").write_text(json.dumps(manifest, indent=2))


def payload_control(bench: Bench) -> list[Row]:
    """The control: each payload creates its marker when loaded the unsafe way."""
    import numpy as np
    import torch
    import yaml

    box = bench.sandbox("payload control")
    payloads = Payloads(bench, box.path)
    state = checkpoint_dir(payloads.run, SHORT_STEPS) / "state.pt"
    loads = {
        ".pth": lambda: torch.load(payloads.pth, weights_only=False),
        "state.pt": lambda: torch.load(state, weights_only=False),
        "teacher weights": lambda: torch.load(payloads.teacher / "pytorch_model.bin",
                                              weights_only=False),
        ".npz": lambda: np.load(payloads.npz, allow_pickle=True)["features"],
        ".npy": lambda: np.load(payloads.npy, allow_pickle=True),
        "YAML": lambda: yaml.unsafe_load(payloads.yaml.read_text()),
    }
    check = Check()
    for name, load in loads.items():
        payloads.marker.unlink(missing_ok=True)
        try:
            load()
        except Exception as error:  # the payload ran before any error after it
            check.note(f"{name}: {type(error).__name__}")
        ran = payloads.marker.exists()
        check.expect(ran, f"{name} {'runs' if ran else 'does not run'}")
    payloads.marker.unlink(missing_ok=True)
    return [check.row("payload control: each payload loaded unsafely (torch.load "
                      "weights_only=False, np.load allow_pickle=True, yaml.unsafe_load)",
                      "every payload runs its code: a missing marker below means refused")]


def _checkpoint_commands(bench: Bench, out: Path) -> dict[str, Callable]:
    """Command name -> (checkpoint -> arguments loading it)."""
    listing = str(bench.train_list)
    video = str(sorted((bench.root / "data" / "train").glob("*.mp4"))[0])
    return {
        "features": lambda c: ["features", "--checkpoint", c, "--data", listing,
                               "--out", str(out / "f.npz"), "--workers", "0"],
        "probe": lambda c: ["probe", "--checkpoint", c, "--train", listing, "--val", listing,
                            "--workers", "0"],
        "evaluate": lambda c: ["evaluate", "--checkpoint", c, "--data", listing,
                               "--out", str(out / "e.json"), "--workers", "0"],
        "finetune": lambda c: ["finetune", "--checkpoint", c, "--train", listing,
                               "--out", str(out / "ft"), "--steps", "1", "--batch-size", "2",
                               "--set", "data.workers=0", "--set", "data.frames=4",
                               "--set", "data.size=32", "--set", "data.stride=2"],
        "export": lambda c: ["export", "--checkpoint", c, "--out", str(out / "export")],
        "visualize": lambda c: ["visualize", "--checkpoint", c, video,
                                "--out", str(out / "viz")],
    }


def pickle_payloads(bench: Bench, only: list[str] | None = None) -> list[Row]:
    """Every command that loads a file, given a file whose loading would run code: refused in
    one line (exit 2 or 3) or, for a file the command does not need, not read (exit 0); the
    marker never appears and nothing is written outside ``--out``."""
    cases = _payload_cases(bench)
    rows = []
    for name in only or list(cases):
        box = bench.sandbox(f"payload {name}")
        payloads = Payloads(bench, box.path)
        command_name, args, may_pass = cases[name](payloads, box.out, box.path)
        before = box.snapshot()
        check = Check()
        expected = ("refused in one line (exit 2/3)" + (" or not needed (exit 0)" if may_pass
                                                        else "") + "; the code never runs")
        done = run(args, box.path)
        if done.code == 4 and "error:" in done.stderr:  # an optional package is missing
            rows.append(Row(f"payload: {name}", expected, "not run: " + done.stderr.split(
                "error:", 1)[1].strip()[:100], None))
            continue
        if done.code == 0 and may_pass:
            check.note("exit 0")
        else:
            expect_one_error_line(check, done, command_name, (2, 3))
        ran = payloads.marker.exists()
        check.expect(not ran, "THE CODE RAN" if ran else "no marker")
        box.expect_nothing_outside(check, before)
        rows.append(check.row(f"payload: {name}", expected))
    return rows


def _payload_cases(bench: Bench) -> dict[str, Callable]:
    """Row name -> (payloads, out, sandbox) -> (command, arguments, whether exit 0 is right:
    the payload sits in a file the command has no need to read)."""
    cases: dict[str, Callable] = {}
    for command_name in ("features", "probe", "evaluate", "finetune", "export", "visualize"):
        # .pt and .pth take one path through the loaders: .pt once is enough.
        for kind in (".pth", "run folder") + ((".pt",) if command_name == "features" else ()):
            def case(p: Payloads, out: Path, box: Path, command_name=command_name, kind=kind):
                target = {".pth": p.pth, ".pt": p.pt, "run folder": p.run}[kind]
                args = _checkpoint_commands(bench, out)[command_name](str(target))
                return command_name, args, kind == "run folder"

            label = "a run folder whose state.pt is a pickle" if kind == "run folder" else kind
            cases[f"{command_name} --checkpoint {label}"] = case

    def resume(p: Payloads, out: Path, box: Path):
        shutil.copytree(p.run, out)
        return "pretrain", bench.pretrain(out, resume=True), False

    cases["pretrain --resume over a pickled state.pt"] = resume
    for command_name in ("pretrain", "finetune", "extract-tracks", "extract-teacher"):
        def config(p: Payloads, out: Path, box: Path, command_name=command_name):
            listing = str(bench.train_list)
            args = {"pretrain": ["pretrain", "--data", listing, "--out", str(out)],
                    "finetune": ["finetune", "--scratch", "--train", listing, "--out", str(out)],
                    "extract-tracks": ["extract-tracks", "--data", listing, "--cache", str(out)],
                    "extract-teacher": ["extract-teacher", "--data", listing, "--cache",
                                        str(out)]}[command_name]
            return command_name, [*args, "--config", str(p.yaml)], False

        cases[f"{command_name} --config YAML with a !!python tag"] = config
    cases["probe --features-train .npz with an object array"] = lambda p, out, box: (
        "probe", ["probe", "--features-train", str(p.npz), "--features-val", str(p.npz)], False)
    video = str(sorted((bench.root / "data" / "train").glob("*.mp4"))[0])
    cases["tracks --queries .npy with an object array"] = lambda p, out, box: (
        "tracks", ["tracks", video, "--out", str(out / "t.npz"), "--queries", str(p.npy)], False)
    cases["tracks --tracker cotracker --checkpoint .pth"] = lambda p, out, box: (
        "tracks", ["tracks", video, "--out", str(out / "t.npz"), "--tracker", "cotracker",
                   "--checkpoint", str(p.pth)], False)
    cases["pretrain, targets.teacher.path: pickled weights"] = lambda p, out, box: (
        "pretrain", [*bench.pretrain(out), "--targets", "pixel,teacher",
                     "--set", f"targets.teacher.path={p.teacher}"], False)
    cases["extract-teacher --teacher: pickled weights"] = lambda p, out, box: (
        "extract-teacher", ["extract-teacher", "--data", str(bench.train_list), "--cache",
                            str(out), "--teacher", str(p.teacher)], False)

    def report(p: Payloads, out: Path, box: Path):
        shutil.copytree(bench.reference(), out)
        (out / "config.yaml").write_text(_yaml_payload(p.marker))
        return "report", ["report", str(out)], True

    cases["report of a run whose config.yaml has a !!python tag"] = report
    return cases
