"""Faults (issue 31): full disks, killed processes, lying files and poisoned data lose nothing
and crash nothing. Guarantees listed in docs/faults.md.

Cheap by design: tiny images and checkpoints; the subprocesses that need JAX (a killed
checkpoint write, two `predict` runs on one folder) start together and overlap.
"""

import errno
import os
import selectors
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib

import cv2
import numpy as np
import pytest

from modnet_jax import checkpointing, predict
from modnet_jax.imaging import decode, files
from modnet_jax.imaging.files import InputError, UnusableFile
from modnet_jax.inference.images import write_image
from modnet_jax.inference.images import collect_inputs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _png_bytes(image):
    return cv2.imencode(".png", image)[1].tobytes()


def _jpeg_bytes(image):
    return cv2.imencode(".jpg", image)[1].tobytes()


def _leftovers(folder):
    """Temporary files of interrupted writes under `folder`."""
    return [os.path.join(d, n) for d, _, names in os.walk(folder) for n in names
            if ".part" in n or "tmp" in n]


# ------------------------------------------------------------------ content vs extension

def test_the_content_decides_what_a_file_is(tmp_path):
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (24, 32), dtype=np.uint8)
    png_as_jpg = tmp_path / "png.jpg"
    png_as_jpg.write_bytes(_png_bytes(colour[:, :, ::-1]))  # an intact PNG, named .jpg
    head = decode.probe_header(str(png_as_jpg))
    assert (head.width, head.height, head.channels) == (32, 24, 3)
    np.testing.assert_array_equal(decode.decode_rgb(str(png_as_jpg)), colour)  # lossless
    matte_as_jpg = tmp_path / "matte.jpg"
    matte_as_jpg.write_bytes(_png_bytes(grey))
    np.testing.assert_array_equal(decode.decode_alpha(str(matte_as_jpg)), grey)
    np.testing.assert_array_equal(decode.decode_alpha(str(matte_as_jpg), reduce=2),
                                  cv2.resize(grey, (16, 12), interpolation=cv2.INTER_AREA))
    jpg_as_png = tmp_path / "jpg.png"
    jpg_as_png.write_bytes(_jpeg_bytes(colour[:, :, ::-1]))
    assert decode.probe_header(str(jpg_as_png)).width == 32
    reference = cv2.imdecode(np.frombuffer(jpg_as_png.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(decode.decode_rgb(str(jpg_as_png)), reference[:, :, ::-1])
    npy_as_png = tmp_path / "raw.png"  # a raw array under an image name: mapped, not decoded
    with open(npy_as_png, "wb") as handle:
        np.save(handle, grey)
    np.testing.assert_array_equal(decode.decode_alpha(str(npy_as_png)), grey)
    png_as_npy = tmp_path / "png.npy"
    png_as_npy.write_bytes(_png_bytes(grey))
    np.testing.assert_array_equal(decode.decode_alpha(str(png_as_npy)), grey)

    # Content that is no image we read: refused, saying what it is.
    liars = {"clip.jpg": b"\x00\x00\x00\x18ftypmp42" + bytes(64),
             "anim.png": b"GIF89a" + bytes(64), "model.jpg": b"PK\x03\x04" + bytes(64)}
    for name, data in liars.items():
        (tmp_path / name).write_bytes(data)
    for name, what in (("clip.jpg", "video"), ("anim.png", "GIF"), ("model.jpg", "ZIP")):
        with pytest.raises(UnusableFile, match=what):
            decode.decode_rgb(str(tmp_path / name))
        with pytest.raises(UnusableFile, match=what):
            decode.probe_header(str(tmp_path / name))

    with pytest.raises(FileNotFoundError, match="a PNG image"):  # given as a checkpoint
        checkpointing.resolve_checkpoint(str(png_as_jpg))

    # predict sorts inputs by content: a video named .jpg is a video, a photo named .mp4 a photo.
    writer = cv2.VideoWriter(str(tmp_path / "movie.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5,
                             (32, 24), True)
    assert writer.isOpened()
    for _ in range(3):
        writer.write(colour)
    writer.release()
    os.rename(tmp_path / "movie.avi", tmp_path / "movie.jpg")
    (tmp_path / "photo.mp4").write_bytes(_jpeg_bytes(colour))
    found = collect_inputs([str(tmp_path / "movie.jpg"), str(tmp_path / "photo.mp4")])
    assert [p for p, _ in found.videos] == [str(tmp_path / "movie.jpg")]
    assert [p for p, _ in found.images] == [str(tmp_path / "photo.mp4")]


# ------------------------------------------------------------------ poisoned data

def _float_files(tmp_path, values):
    """{name: path} of float mattes holding `values` in every format that can store floats."""
    out = {}
    for dtype in (np.float32, np.float64):
        path = tmp_path / f"matte_{np.dtype(dtype).name}.tif"
        assert cv2.imwrite(str(path), values.astype(dtype))
        assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).dtype == dtype
        out[path.name] = path
    rgba = tmp_path / "matte_rgba.tif"  # the alpha channel of a float RGBA TIFF
    planes = np.repeat(np.full_like(values, 0.5)[:, :, None], 4, axis=2).astype(np.float32)
    planes[:, :, 3] = values
    assert cv2.imwrite(str(rgba), planes)
    out[rgba.name] = rgba
    npy = tmp_path / "matte.npy"
    np.save(npy, values.astype(np.float32))
    out[npy.name] = npy
    return out


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_in_float_mattes_are_refused(tmp_path, bad):
    values = np.linspace(0.0, 1.0, 6 * 8).reshape(6, 8)
    values[2, 3] = bad
    for name, path in _float_files(tmp_path, values).items():
        for read in (decode.decode_alpha,  # training: the sample is skipped
                     decode.decode_alpha_native):  # evaluation / trimaps: an error line
            with pytest.raises(UnusableFile) as caught:
                read(str(path))
            assert caught.value.path == str(path), name
    # A float colour image with NaN is refused too, not turned into black pixels.
    image = tmp_path / "image.tif"
    pixels = np.full((6, 8, 3), 0.5, np.float32)
    pixels[1, 1, 0] = bad
    assert cv2.imwrite(str(image), pixels)
    with pytest.raises(UnusableFile, match="image.tif"):
        decode.decode_rgb(str(image))
    # Finite float files still read, as [0, 1].
    for name, path in _float_files(tmp_path, np.linspace(0, 1, 48).reshape(6, 8)).items():
        if name != "matte.npy":  # raw files must be uint8 (refused by dtype)
            np.testing.assert_allclose(decode.decode_alpha_native(str(path)),
                                       np.linspace(0, 1, 48).reshape(6, 8), atol=1e-6)


def _png_claiming(width, height):
    """A small, well-formed PNG whose header claims `width` x `height` RGB pixels."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(bytes(1 + 3 * width) * 4)  # a few rows of the claimed width
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows)
            + chunk(b"IEND", b""))


def test_decompression_bomb_headers_are_refused_before_decoding(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_claiming(30000, 30000))  # 2.7 GB of RGB from a 100 KB file
    assert bomb.stat().st_size < 200_000
    for read in (decode.probe_header, decode.decode_rgb, decode.decode_alpha):
        with pytest.raises(UnusableFile, match="30000x30000"):
            read(str(bomb))
    small = tmp_path / "small.png"
    small.write_bytes(_png_claiming(64, 4))
    assert decode.decode_rgb(str(small)).shape == (4, 64, 3)


# ------------------------------------------------------------------ folders and patterns

def test_symlink_loops_and_links_are_followed_once(tmp_path):
    root = tmp_path / "photos"
    (root / "2024").mkdir(parents=True)
    for name in ("a.jpg", "2024/b.jpg"):
        cv2.imwrite(str(root / name), np.full((8, 8, 3), 90, np.uint8))
    os.symlink("..", root / "2024" / "up")  # a loop: photos/2024/up -> photos
    os.symlink(str(root / "a.jpg"), root / "again.jpg")  # one file by two names
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cv2.imwrite(str(elsewhere / "c.jpg"), np.full((8, 8, 3), 10, np.uint8))
    os.symlink(str(elsewhere), root / "linked")  # a link to a folder outside: followed
    want = {str(root / "a.jpg"), str(root / "2024/b.jpg"), str(root / "linked/c.jpg")}

    pattern = collect_inputs([str(root / "**" / "*.jpg")])
    assert sorted(p for p, _ in pattern.images) == sorted(want)
    folder = collect_inputs([str(root)], recursive=True)
    assert sorted(p for p, _ in folder.images) == sorted(want)
    both = collect_inputs([str(root), str(root / "*.jpg"), str(root / "again.jpg")],
                          recursive=True)
    assert len(both.images) == 3  # each file once, whatever the paths it was given by
    assert len(files.list_files(str(root))) == 3  # training data: the same listing


# ------------------------------------------------------------------ disks that fail

_FULL_DISK = """
import os, sys
import numpy as np
from modnet_jax.imaging.files import InputError
from modnet_jax.inference.images import write_image
folder, readonly = sys.argv[1], sys.argv[2]
noise = np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8)
for target in (os.path.join(folder, "x_matte.png"), os.path.join(readonly, "y_matte.png")):
    try:
        write_image(target, noise)
        print("written", target)
    except Exception as exc:
        print(isinstance(exc, (InputError, OSError)), exc)
"""


def test_a_full_disk_is_reported_as_itself_and_leaves_nothing(tmp_path, monkeypatch):
    """A 64 KiB tmpfs when a user namespace can mount one (else ENOSPC from the OS call)."""
    full, readonly = tmp_path / "full", tmp_path / "ro"
    full.mkdir()
    readonly.mkdir()
    script = tmp_path / "full_disk.py"
    script.write_text(_FULL_DISK)
    mounted = shutil.which("unshare") and subprocess.run(
        ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k none {full} && "
         f"mount -t tmpfs -o ro none {readonly} && {sys.executable} {script} {full} "
         f"{readonly} && ls -a {full}"], env=ENV, capture_output=True, text=True, timeout=300)
    if mounted and mounted.returncode == 0:
        lines = mounted.stdout.splitlines()
        assert lines[0] == f"True {full / 'x_matte.png'}: cannot write (No space left " \
                           "on device)", mounted.stdout + mounted.stderr
        assert lines[1] == f"True {readonly / 'y_matte.png'}: cannot write (Read-only " \
                           "file system)", mounted.stdout
        assert lines[2:] == [".", ".."]  # nothing half-written left on the full disk
        return
    real_write = os.write

    def disk_full_after_4k(fd, data):
        if len(data) > 4096:
            real_write(fd, bytes(data[:4096]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", disk_full_after_4k)
    noise = np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8)
    with pytest.raises(InputError, match=r"x_matte.png: cannot write \(No space left"):
        write_image(str(full / "x_matte.png"), noise)
    assert os.listdir(full) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permissions")
def test_permission_denied_is_reported_as_itself(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    with pytest.raises(InputError, match=r"x.png: cannot write \(Permission denied\)"):
        write_image(str(locked / "x.png"), np.zeros((4, 4), np.uint8))


_RACE = """
import sys
import numpy as np
from modnet_jax.imaging.output import write_image
path, seed = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(seed)
for i in range(150):
    size = int(rng.integers(40, 120))
    write_image(path, rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
"""


def test_two_processes_writing_one_file_never_show_a_torn_file(tmp_path):
    """Readers see one whole version or another, never a part (written under a temporary
    name, then renamed)."""
    target = tmp_path / "shared_matte.png"
    write_image(str(target), np.zeros((8, 8), np.uint8))
    script = tmp_path / "race.py"
    script.write_text(_RACE)
    writers = [subprocess.Popen([sys.executable, str(script), str(target), str(seed)],
                                env=ENV, stderr=subprocess.PIPE, text=True) for seed in (1, 2)]
    reads = torn = 0
    while any(w.poll() is None for w in writers) or reads == 0:
        data = target.read_bytes()
        reads += 1
        if not data.endswith(b"IEND\xaeB`\x82") \
                or cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) is None:
            torn += 1
    for w in writers:
        assert w.wait(timeout=120) == 0, w.stderr.read()
    assert torn == 0, f"{torn} of {reads} reads saw a partly written file"
    assert sorted(os.listdir(tmp_path)) == ["race.py", "shared_matte.png"]


# ------------------------------------------------------------------ checkpoints

def _tiny_tree(leaves=24):
    """Random values (they do not compress away), so the data file has a byte range per leaf."""
    return {"params": {f"w{i:02d}": np.random.default_rng(i).random(4096, np.float32)
                       for i in range(leaves)},
            "batch_stats": {"mean": np.zeros(8, np.float32)}}


def _damage(step_dir, how):
    state = os.path.join(step_dir, checkpointing.STATE_ITEM)
    data = [os.path.join(d, n) for d, _, names in os.walk(state) for n in names
            if os.path.basename(d) == "d"]  # TensorStore's data files
    if how == "truncated":
        biggest = max(data, key=os.path.getsize)
        with open(biggest, "r+b") as handle:
            handle.truncate(100)
    elif how == "metadata":
        with open(os.path.join(state, "_METADATA"), "w") as handle:
            handle.write("{ not json")
    elif how == "data deleted":
        for path in data:
            os.remove(path)


@pytest.mark.parametrize("how", ["truncated", "metadata", "data deleted"])
def test_a_damaged_checkpoint_is_one_error_line_and_nothing_after(tmp_path, capfd, how):
    step_dir = checkpointing.save_variables(str(tmp_path / "ckpt"), _tiny_tree(), model_config={})
    _damage(step_dir, how)
    for _ in range(3):  # the late-callback tracebacks came 0 to 20 times a run
        with pytest.raises(ValueError, match=str(step_dir)):
            checkpointing.load_variables(str(tmp_path / "ckpt"))
    img = tmp_path / "x.png"
    cv2.imwrite(str(img), np.zeros((32, 32, 3), np.uint8))
    capfd.readouterr()
    rc = predict.cli(["--checkpoint", str(tmp_path / "ckpt"), str(img), "--output",
                      str(tmp_path / "out"), "--quiet", "--compile-cache", "none"])
    time.sleep(1.0)  # reads still in flight would call back now
    err = capfd.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and str(step_dir) in err, err
    assert not (tmp_path / "out").exists()


_KILLED_SAVE = """
import os, signal, sys, threading, time
import numpy as np
from modnet_jax.checkpointing import TrainCheckpointer
directory = sys.argv[1]
ckpt = TrainCheckpointer(directory, keep_last=3, keep_best=0, async_save=False)
tree = {"params": {"w": np.full(1000, 1.0, np.float32)}, "batch_stats": {}}
ckpt.save(1, tree)
ckpt.wait()

def kill_once_writing():  # at some point while step 2's files are being written...
    while True:
        if any(not name.isdigit() for name in os.listdir(directory)):
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(0.0005)

rename = os.rename

def kill_before_commit(source, target, *args, **kwargs):  # ...at the latest before it is
    if os.path.dirname(os.path.abspath(source)) == os.path.abspath(directory):  # committed
        os.kill(os.getpid(), signal.SIGKILL)  # (however slow the thread above is scheduled)
    return rename(source, target, *args, **kwargs)

os.rename = kill_before_commit
threading.Thread(target=kill_once_writing, daemon=True).start()
big = {"params": {"w%d" % i: np.random.default_rng(i).random(1 << 20, np.float32)
                  for i in range(16)}, "batch_stats": {}}
ckpt.save(2, big)
ckpt.wait()
print("step 2 finished before the kill")
"""


def _start_killed_save(tmp_path):
    script = tmp_path / "killed_save.py"
    script.write_text(_KILLED_SAVE)
    return subprocess.Popen([sys.executable, str(script), str(tmp_path / "run")], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _check_resume_after_kill(tmp_path, proc):
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == -signal.SIGKILL, out + err
    directory = str(tmp_path / "run")
    ckpt = checkpointing.TrainCheckpointer(directory, keep_best=0, async_save=False)
    assert ckpt.latest_step() == 1  # the killed step is not taken for a finished one
    assert checkpointing.resolve_checkpoint(directory).endswith(os.sep + "1")
    target = {"params": {"w": np.zeros(1000, np.float32)}, "batch_stats": {}}
    state, _ = ckpt.restore(1, target, with_data=False)
    np.testing.assert_array_equal(state["params"]["w"], np.ones(1000, np.float32))
    ckpt.save(2, {"params": {"w": np.full(1000, 2.0, np.float32)}, "batch_stats": {}})
    ckpt.close()  # resuming writes the step again over the killed attempt's leftovers
    np.testing.assert_array_equal(checkpointing.load_variables(directory)["params"]["w"],
                                  np.full(1000, 2.0, np.float32))


# ------------------------------------------------------------------ interrupted and shared runs

_SLOW_DISK_PREDICT = """
import os, signal, sys, threading, time
from modnet_jax import predict
write = predict.write_image
held = os.environ.get("HOLD_AFTER_FIRST") == "1"
interrupted = threading.Event()

def on_sigint(signum, frame):
    interrupted.set()
    signal.default_int_handler(signum, frame)  # raises KeyboardInterrupt, as by default

signal.signal(signal.SIGINT, on_sigint)
written = []

def slow_write(path, image):  # a slow disk; the held run stops mid-folder after one file
    if held and written:
        interrupted.wait(timeout=900)  # until the test interrupts it (bounded, generous)
    else:
        time.sleep(0.2)
    write(path, image)
    written.append(path)
    print("wrote", path, flush=True)  # what the test waits for

predict.write_image = slow_write
sys.exit(predict.cli(sys.argv[1:]))
"""


def _next_line(proc, timeout):
    """The process's next stdout line; fails (with its stderr) if it ends first or `timeout`
    seconds pass (a bound for a hung run, far above any load's start-up time)."""
    ready = selectors.DefaultSelector()
    ready.register(proc.stdout, selectors.EVENT_READ)
    if not ready.select(timeout):
        proc.kill()
        pytest.fail(f"no output in {timeout} s: {proc.communicate()[1][-3000:]}")
    line = proc.stdout.readline()
    assert line, f"ended before writing anything: {proc.communicate()[1][-3000:]}"
    return line


_DAMAGED_PREDICT = """
import sys
from modnet_jax import predict
ckpt, photo, out = sys.argv[1:]
print([predict.cli(["--checkpoint", ckpt, photo, "--output", out, "--quiet"]) for _ in range(3)])
"""


def test_interrupt_shared_folder_and_killed_checkpoint(untrained, tmp_path):
    """Four faults at once, to share the subprocesses' start-up: SIGKILL during a checkpoint
    write, then a resume; two `predict` runs writing one output folder, one of them
    interrupted (SIGINT) in the middle of the folder; `predict` on a damaged checkpoint of the
    real model (whose many concurrent reads used to end in "Event loop is closed" tracebacks
    after the error line: 0 to 20 a run, hundreds when one process tries five times)."""
    _, _, ckpt = untrained
    killed = _start_killed_save(tmp_path)
    damaged = tmp_path / "damaged"
    shutil.copytree(ckpt, damaged / "0")
    _damage(str(damaged / "0"), "truncated")
    src, out = tmp_path / "photos", tmp_path / "out"
    src.mkdir()
    rng = np.random.default_rng(3)
    for i in range(8):
        cv2.imwrite(str(src / f"p{i}.png"), rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))
    script = tmp_path / "slow_predict.py"
    script.write_text(_SLOW_DISK_PREDICT)
    argv = [sys.executable, str(script), "--checkpoint", ckpt, str(src), "--output", str(out),
            "--ref-size", "64", "--batch-size", "1", "--quiet"]
    runs = [subprocess.Popen(argv, env={**ENV, "HOLD_AFTER_FIRST": hold},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for hold in ("1", "0")]
    on_damaged = subprocess.Popen(  # three tries in one process: main printed hundreds
        [sys.executable, "-c", _DAMAGED_PREDICT, str(damaged), str(src / "p0.png"),
         str(tmp_path / "unused")], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    first = _next_line(runs[0], timeout=900)  # run 0 has written one matte and holds the next
    assert first.startswith("wrote ") and first.strip().endswith("_matte.png"), first
    runs[0].send_signal(signal.SIGINT)
    err0, err1 = (r.communicate(timeout=900)[1] for r in runs)
    assert runs[0].returncode == 130, err0
    assert err0.strip().splitlines()[-1] == "error: interrupted" and "Traceback" not in err0
    assert runs[1].returncode == 0 and "Traceback" not in err1, err1
    mattes = sorted(out.glob("*_matte.png"))
    assert [m.name for m in mattes] == [f"p{i}_matte.png" for i in range(8)]
    for matte in mattes:  # every file whole (decodes, ends with IEND), none half-written
        assert matte.read_bytes().endswith(b"IEND\xaeB`\x82")
        assert cv2.imread(str(matte), cv2.IMREAD_UNCHANGED).shape == (40, 48)
    assert _leftovers(out) == []
    out, err = on_damaged.communicate(timeout=900)
    assert out.strip() == "[2, 2, 2]", out + err
    lines = err.splitlines()
    assert len(lines) == 3 and all(line.startswith("error: ") and str(damaged) in line
                                   for line in lines), err
    assert not (tmp_path / "unused").exists()
    _check_resume_after_kill(tmp_path, killed)


# ------------------------------------------------------------------ non-ASCII paths

def test_non_ascii_paths(tmp_path):
    folder = tmp_path / "données" / "фото 写真"
    folder.mkdir(parents=True)
    colour = np.random.default_rng(5).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    photo = folder / "été.png"
    write_image(str(photo), colour)
    np.testing.assert_array_equal(decode.decode_rgb(str(photo)), colour)
    assert files.list_files(str(tmp_path / "données")) == {"фото 写真/été": str(photo)}
    assert [p for p, _ in collect_inputs([str(tmp_path / "données" / "*" / "*.png")]).images] \
        == [str(photo)]
    step = checkpointing.save_variables(str(tmp_path / "модель"), _tiny_tree(leaves=2))
    loaded = checkpointing.load_variables(step)
    np.testing.assert_array_equal(loaded["params"]["w01"], _tiny_tree(leaves=2)["params"]["w01"])


def test_an_empty_validation_split_does_not_ask_for_what_is_set():
    from modnet_jax.data import DatasetError, validate_dataset

    cfg = dict(layout="synthetic", synthetic_size=10, val_fraction=0.01)  # holds out 0 of 10
    with pytest.raises(DatasetError) as caught:
        validate_dataset(cfg, image_size=32, split="val")
    assert "val_fraction=0.01" in str(caught.value)
    assert "val_fraction > 0" not in str(caught.value)
