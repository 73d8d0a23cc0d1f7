"""Weights files a crafted hand made (model.state_check): loading must not allocate what the file does
not hold, and the network must not be built larger than the file's own tensors. Each case is the
smallest file of an attack the fuzzer's torch mutations found or could find (tests/fuzz)."""

from __future__ import annotations

import io
import resource
import zipfile

import pytest
import torch
from omg_helpers import SMALL_DINO, small_config

from backend.errors import InputError
from backend.model.dinov2 import load_dinov2
from backend.model.omg import OMG, OMGConfig
from backend.model.state_check import TENSOR_SLACK_BYTES, check_state_fits, load_weights_file
from backend.model.train import CHECKPOINT_FORMAT, checkpoint_network, head_model_signature


def _save(obj, path):
    torch.save(obj, path)
    return path


def test_a_valid_file_loads_and_what_torch_save_never_writes_is_refused(tmp_path, small_dino):
    state = small_dino.state_dict()
    ok = _save(state, tmp_path / "ok.pth")
    assert set(load_weights_file(ok, "weights file")) == set(state)
    # the same records deflated: torch would inflate them (a zip bomb: 40 MB of zeros is 40 KB)
    bomb = tmp_path / "bomb.pth"
    with zipfile.ZipFile(ok) as z, zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as out:
        for n in z.namelist():
            out.writestr(n, z.read(n))
    with pytest.raises(InputError, match=r"bomb.pth: not a loadable PyTorch weights file: record .* is compressed"):
        load_weights_file(bomb, "weights file")
    # a zip whose records need a later zip version than Python reads (zipfile: NotImplementedError)
    raw = bytearray(ok.read_bytes())
    cd = raw.find(b"PK\x01\x02")
    raw[cd + 6:cd + 8] = (128).to_bytes(2, "little")
    (tmp_path / "version.pth").write_bytes(bytes(raw))
    with pytest.raises(InputError, match=r"version.pth: not a loadable PyTorch weights file \(not torch.save's zip"):
        load_weights_file(tmp_path / "version.pth", "weights file")
    # the legacy (pre-1.6) format, and not a torch file at all
    legacy = tmp_path / "legacy.pth"
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    for p in (legacy, (tmp_path / "text.pth")):
        if not p.exists():
            p.write_text("hello")
        with pytest.raises(InputError, match=rf"{p.name}: not a loadable PyTorch weights file \(not torch.save's zip"):
            load_weights_file(p, "weights file")


def test_a_view_that_claims_more_than_the_file_holds_is_refused(tmp_path):
    """A zero-stride view of one number claims a billion elements in a 2 kB file: refused before a
    network of that size is made (the claim is what the network's copy would allocate)."""
    path = _save({"cls_token": torch.zeros(1).expand(1, 1, 10**9)}, tmp_path / "wide.pth")
    assert path.stat().st_size < 4096
    with pytest.raises(InputError, match=r"wide.pth: .*tensors claim 3815 MiB, the file holds 0 MiB"):
        load_weights_file(path, "weights file")
    small = _save({"a": torch.zeros(1).expand(TENSOR_SLACK_BYTES // 8)}, tmp_path / "small.pth")
    load_weights_file(small, "weights file")                 # within the slack: loads


def test_dinov2_with_a_crafted_width_or_depth_is_refused_before_anything_is_built(tmp_path, small_dino):
    """A DINOv2 file's width comes from cls_token and its depth from the highest block index: a wide
    cls_token or a far block index alone must not build a network of that size (the address space
    is capped at 8 GiB here: building either would fail to allocate, not raise our error)."""
    state = small_dino.state_dict()
    wide = dict(state, cls_token=torch.zeros(1, 1, 30_016))          # 469 heads; 10.8 GB per block's qkv
    deep = dict(state, **{"blocks.60.norm1.weight": torch.zeros(64)})
    deeper = dict(state, **{f"blocks.{i}.norm1.weight": torch.zeros(0) for i in range(100_000)})   # 4 MB of keys
    gap = {k: v for k, v in state.items() if k != "blocks.1.mlp.fc2.weight"}
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (min(8 << 30, hard) if hard > 0 else 8 << 30, hard))
    try:
        for name, st, pattern in (("wide", wide, r"DINOv2 weights do not match the network: .*wrong shape"),
                                  ("deep", deep, r"its shapes name no architecture: ValueError: blocks \[2, 3, 4\]"),
                                  ("deeper", deeper, r"ValueError: 100000 blocks, more than any DINOv2 \(64 at most\)"),
                                  ("gap", gap, r"1 tensors missing, 0 unexpected \(missing: blocks.1.mlp.fc2")):
            with pytest.raises(InputError, match=rf"{name}.pth: .*{pattern}"):
                load_dinov2(_save(st, tmp_path / f"{name}.pth"))
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    assert load_dinov2(_save(state, tmp_path / "ok.pth")).cfg == SMALL_DINO


def test_checkpoint_configuration_out_of_bounds_or_weights_that_do_not_fit_are_refused(tmp_path, head_model):
    cfg = small_config(head_model.n_verts, levels=(0, 1))
    torch.manual_seed(0)
    state = OMG(cfg, head_model.faces, head_model.weights).state_dict()
    ck = {"format": CHECKPOINT_FORMAT, "config": cfg.to_dict(), "head_model": head_model_signature(head_model),
          "model": state}
    got_cfg, got_state = checkpoint_network(ck, head_model, "c.pt")
    assert got_cfg == cfg and got_state is state
    cases = {"dim": (dict(ck, config=dict(cfg.to_dict(), dim=10**6)), r"config dim holds 1000000, outside \[1, 4096\]"),
             "layers": (dict(ck, config=dict(cfg.to_dict(), decoder_layers=10**5)), r"config decoder_layers holds"),
             "levels": (dict(ck, config=dict(cfg.to_dict(), levels=[0, 7])), r"config levels holds 7"),
             "type": (dict(ck, config=dict(cfg.to_dict(), dim="32")), r"config dim holds '32', not an integer"),
             "bool": (dict(ck, config=dict(cfg.to_dict(), self_attention=1)), r"config self_attention is 1"),
             "float": (dict(ck, config=dict(cfg.to_dict(), max_offset=float("nan"))), r"not a finite number"),
             "weights": (dict(ck, model=7), r"its weights are a int"),
             # within bounds, but not the network these weights are for: refused on the meta device
             "wider": (dict(ck, config=dict(cfg.to_dict(), dim=4096)), r"OMG weights do not match the network"),
             "heads": (dict(ck, config=dict(cfg.to_dict(), decoder_heads=3)), r"dim 32 does not split into 3"),
             "patch": (dict(ck, config=dict(cfg.to_dict(), dino_input=100)), r"dino_input 100 is not a multiple of 14"),
             "conv": (dict(ck, config=dict(cfg.to_dict(), unet_channels=[8, 0])), r"config unet_channels holds 0")}
    for name, (bad, pattern) in cases.items():
        with pytest.raises(InputError, match=rf"{name}.pt: .*{pattern}"):
            checkpoint_network(bad, head_model, f"{name}.pt")
    assert OMGConfig.from_dict(cfg.to_dict()) == cfg


def test_check_state_fits_names_the_first_difference():
    build = lambda: torch.nn.Linear(3, 2)  # noqa: E731
    check_state_fits(build, {"weight": torch.zeros(2, 3), "bias": torch.zeros(2)}, "f.pt", "weights")
    with pytest.raises(InputError, match=r"f.pt: weights do not match the network: 1 tensors missing, 0 unexpected "
                                         r"\(missing: bias\)"):
        check_state_fits(build, {"weight": torch.zeros(2, 3)}, "f.pt", "weights")
    with pytest.raises(InputError, match=r"weight: \[2, 4\], expected \[2, 3\]"):
        check_state_fits(build, {"weight": torch.zeros(2, 4), "bias": torch.zeros(2)}, "f.pt", "weights")
