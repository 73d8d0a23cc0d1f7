"""DINOv2 backbone: parity with transformers' Dinov2Model on shared random weights, loading, shapes."""

from __future__ import annotations

import builtins

import pytest
import torch

from backend.errors import InputError
from backend.model.dinov2 import DinoConfig, DinoV2, load_dinov2, preprocess

import transformers  # dev requirement (requirements/dev.txt): missing -> the run fails, never skips


def _randomize(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def _to_hf(state: dict[str, torch.Tensor], depth: int, dim: int) -> dict[str, torch.Tensor]:
    """Map DINOv2 (official) key names to transformers' Dinov2Model names (q/k/v split)."""
    out = {
        "embeddings.cls_token": state["cls_token"],
        "embeddings.mask_token": state["mask_token"],
        "embeddings.position_embeddings": state["pos_embed"],
        "embeddings.patch_embeddings.projection.weight": state["patch_embed.proj.weight"],
        "embeddings.patch_embeddings.projection.bias": state["patch_embed.proj.bias"],
        "layernorm.weight": state["norm.weight"],
        "layernorm.bias": state["norm.bias"],
    }
    for i in range(depth):
        s, h = f"blocks.{i}.", f"encoder.layer.{i}."
        qw, kw, vw = state[s + "attn.qkv.weight"].split(dim, dim=0)
        qb, kb, vb = state[s + "attn.qkv.bias"].split(dim, dim=0)
        out.update({
            h + "norm1.weight": state[s + "norm1.weight"], h + "norm1.bias": state[s + "norm1.bias"],
            h + "attention.q_proj.weight": qw, h + "attention.q_proj.bias": qb,
            h + "attention.k_proj.weight": kw, h + "attention.k_proj.bias": kb,
            h + "attention.v_proj.weight": vw, h + "attention.v_proj.bias": vb,
            h + "attention.o_proj.weight": state[s + "attn.proj.weight"],
            h + "attention.o_proj.bias": state[s + "attn.proj.bias"],
            h + "layer_scale1.lambda1": state[s + "ls1.gamma"],
            h + "norm2.weight": state[s + "norm2.weight"], h + "norm2.bias": state[s + "norm2.bias"],
            h + "mlp.fc1.weight": state[s + "mlp.fc1.weight"], h + "mlp.fc1.bias": state[s + "mlp.fc1.bias"],
            h + "mlp.fc2.weight": state[s + "mlp.fc2.weight"], h + "mlp.fc2.bias": state[s + "mlp.fc2.bias"],
            h + "layer_scale2.lambda1": state[s + "ls2.gamma"],
        })
    return out


class _Evil:
    def __reduce__(self):  # would run code under plain pickle loading
        return (exec, ("import builtins; builtins._omg_pickle_ran = True",))


SMALL = DinoConfig(dim=128, depth=3, heads=2, pretrain_grid=8)  # 64 channels per head, as DINOv2


def _hf_model(cfg: DinoConfig):
    hf_cfg = transformers.Dinov2Config(
        hidden_size=cfg.dim, num_hidden_layers=cfg.depth, num_attention_heads=cfg.heads,
        mlp_ratio=int(cfg.mlp_ratio), patch_size=cfg.patch, image_size=cfg.patch * cfg.pretrain_grid,
        layer_norm_eps=cfg.layer_norm_eps, hidden_act="gelu", layerscale_value=1.0, qkv_bias=True,
    )
    hf_cfg._attn_implementation = "eager"
    return transformers.Dinov2Model(hf_cfg).eval()


@pytest.mark.parametrize("size", [112, 70])  # 112 = pretraining grid (8x8); 70 = 5x5: interpolated pos_embed
def test_parity_with_transformers(size: int) -> None:
    ours = DinoV2(SMALL).eval()
    _randomize(ours, seed=1)
    hf = _hf_model(SMALL)
    missing, unexpected = hf.load_state_dict(_to_hf(ours.state_dict(), SMALL.depth, SMALL.dim), strict=True)
    assert not missing and not unexpected
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a = ours(x)
        b = hf(pixel_values=x)
    scale = b.last_hidden_state.abs().max().item()
    assert a.tokens.shape == b.last_hidden_state.shape == (2, 1 + (size // 14) ** 2, SMALL.dim)
    torch.testing.assert_close(a.tokens, b.last_hidden_state, atol=1e-4 * max(1.0, scale), rtol=1e-4)
    torch.testing.assert_close(a.cls, b.pooler_output, atol=1e-4 * max(1.0, scale), rtol=1e-4)


def test_load_checkpoint_roundtrip_and_frozen(tmp_path) -> None:
    ours = DinoV2(SMALL)
    _randomize(ours, seed=3)
    path = tmp_path / "dinov2_small.pth"
    torch.save(ours.state_dict(), path)
    loaded = load_dinov2(path)
    assert loaded.cfg.dim == SMALL.dim and loaded.cfg.depth == SMALL.depth and loaded.cfg.pretrain_grid == 8
    assert not any(p.requires_grad for p in loaded.parameters()) and not loaded.training
    x = torch.randn(1, 3, 112, 112)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).tokens, ours.eval()(x).tokens)


def test_load_rejects_wrong_files(tmp_path) -> None:
    with pytest.raises(InputError, match="not found"):
        load_dinov2(tmp_path / "nope.pth")
    bad = tmp_path / "notes.pth"
    bad.write_text("hello")
    with pytest.raises(InputError, match="not a loadable"):
        load_dinov2(bad)
    # an arbitrary pickled object is refused by weights_only loading, never executed
    evil = tmp_path / "evil.pth"
    torch.save({"cls_token": _Evil()}, evil)
    with pytest.raises(InputError, match="not a loadable"):
        load_dinov2(evil)
    assert not hasattr(builtins, "_omg_pickle_ran")
    other = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(3)}, other)
    with pytest.raises(InputError, match="not a DINOv2"):
        load_dinov2(other)
    reg = DinoV2(SMALL).state_dict()
    reg["register_tokens"] = torch.zeros(1, 4, SMALL.dim)
    torch.save(reg, tmp_path / "reg.pth")
    with pytest.raises(InputError, match="registers"):
        load_dinov2(tmp_path / "reg.pth")


def test_real_vitb14_shapes() -> None:
    """The real B/14 config at 518x518 gives 37x37 tokens + class token, 86.6M parameters."""
    torch.manual_seed(0)
    cfg = DinoConfig.vitb14()
    model = DinoV2(cfg).eval()
    n = sum(p.numel() for p in model.parameters())
    assert 86_000_000 < n < 87_000_000  # official ViT-B/14: 86.6M (incl. 1370 pos_embed rows)
    names = set(model.state_dict())
    for key in ("patch_embed.proj.weight", "cls_token", "pos_embed", "mask_token", "norm.weight",
                "blocks.11.attn.qkv.weight", "blocks.11.ls1.gamma", "blocks.11.mlp.fc2.bias", "blocks.0.ls2.gamma"):
        assert key in names
    assert model.pos_embed.shape == (1, 1370, 768)
    # the forward at 518 is exercised on a 2-block slice of the same width to keep the test fast
    model.blocks = model.blocks[:2]
    x = preprocess(torch.rand(1, 3, 512, 512), 518)
    with torch.no_grad():
        f = model(x)
    assert f.patches.shape == (1, 768, 37, 37) and f.cls.shape == (1, 768)
    assert DinoConfig.vits14().dim == 384
