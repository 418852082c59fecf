"""Pipelines with random weights for ``bench_engine.py``: SDXL and FLUX.1 at their real sizes
(the published configurations, written out here since nothing is downloaded), or at toy sizes
for the CPU smoke run. Tokenizers are built from a handmade vocabulary; they cut prompts into
words, which is all a benchmark with random weights needs of them.

Not a benchmark: ``bench_engine.py`` imports it (its own directory is on ``sys.path``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    PreTrainedTokenizerFast,
    T5Config,
    T5EncoderModel,
)

WORDS = ("a", "an", "the", "fox", "cat", "dog", "lighthouse", "cliff", "dawn", "dusk", "red",
         "blue", "green", "gold", "on", "at", "in", "of", "over", "sea", "sky", "hill", "city",
         "street", "rain", "night", "portrait", "watercolor", "photo", "film", "grain", "long",
         "exposure", "gulls", "forest", "river", "mountain", "snow", "neon", "glass")


@dataclass(frozen=True)
class Sizes:
    """The dimensions that differ between the real architecture and its toy."""

    unet_channels: tuple[int, ...]
    unet_layers: tuple[int, ...]  # transformer layers per SDXL block
    unet_heads: tuple[int, ...]
    clip: tuple[int, int, int]  # hidden, layers, heads (CLIP ViT-L text encoder)
    clip_big: tuple[int, int, int]  # OpenCLIP ViT-bigG text encoder
    vae_channels: tuple[int, ...]
    flux: tuple[int, int, int, int]  # double blocks, single blocks, heads, head dim
    t5: tuple[int, int, int, int]  # d_model, d_ff, layers, heads
    groups: int


REAL = Sizes(unet_channels=(320, 640, 1280), unet_layers=(1, 2, 10), unet_heads=(5, 10, 20),
             clip=(768, 12, 12), clip_big=(1280, 32, 20), vae_channels=(128, 256, 512, 512),
             flux=(19, 38, 24, 128), t5=(4096, 10240, 24, 64), groups=32)
TINY = Sizes(unet_channels=(16, 32, 64), unet_layers=(1, 1, 1), unet_heads=(2, 2, 2),
             clip=(32, 2, 2), clip_big=(32, 2, 2), vae_channels=(16, 16, 32, 32),
             flux=(1, 1, 2, 16), t5=(32, 64, 2, 2), groups=8)


def _clip_tokenizer(work: Path) -> CLIPTokenizer:
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "!": 2}
    for word in WORDS:
        vocab[word + "</w>"] = len(vocab)
    work.mkdir(parents=True, exist_ok=True)
    (work / "vocab.json").write_text(json.dumps(vocab))
    (work / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(work / "vocab.json"), str(work / "merges.txt"),
                         model_max_length=77)


def _t5_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>",
                                   eos_token="</s>", unk_token="<unk>", model_max_length=512)


def _clip(hidden: int, layers: int, heads: int, projection: bool) -> Any:
    config = CLIPTextConfig(hidden_size=hidden, intermediate_size=hidden * 4,
                            num_hidden_layers=layers, num_attention_heads=heads,
                            vocab_size=49408, max_position_embeddings=77, bos_token_id=0,
                            eos_token_id=1, pad_token_id=1, projection_dim=hidden,
                            hidden_act="gelu")
    return CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)


def _vae(sizes: Sizes, latent_channels: int, **extra: Any) -> AutoencoderKL:
    blocks = len(sizes.vae_channels)
    return AutoencoderKL(block_out_channels=sizes.vae_channels, latent_channels=latent_channels,
                         down_block_types=("DownEncoderBlock2D",) * blocks,
                         up_block_types=("UpDecoderBlock2D",) * blocks, layers_per_block=2,
                         norm_num_groups=sizes.groups, sample_size=1024, **extra)


def sdxl(sizes: Sizes, work: Path) -> StableDiffusionXLPipeline:
    """SDXL base 1.0's architecture: UNet 2.6 B parameters at REAL sizes."""
    clip_hidden, big_hidden = sizes.clip[0], sizes.clip_big[0]
    unet = UNet2DConditionModel(
        sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=sizes.unet_channels, transformer_layers_per_block=sizes.unet_layers,
        attention_head_dim=sizes.unet_heads, cross_attention_dim=clip_hidden + big_hidden,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        addition_embed_type="text_time", addition_time_embed_dim=256 if sizes is REAL else 8,
        projection_class_embeddings_input_dim=(256 if sizes is REAL else 8) * 6 + big_hidden,
        use_linear_projection=True, norm_num_groups=sizes.groups)
    tokenizer = _clip_tokenizer(work / "clip-tokenizer")
    return StableDiffusionXLPipeline(
        vae=_vae(sizes, 4, scaling_factor=0.13025), text_encoder=_clip(*sizes.clip, False),
        text_encoder_2=_clip(*sizes.clip_big, True), tokenizer=tokenizer,
        tokenizer_2=tokenizer, unet=unet,
        scheduler=EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012,
                                         beta_schedule="scaled_linear", steps_offset=1,
                                         timestep_spacing="leading"))


def flux(sizes: Sizes, work: Path) -> FluxPipeline:
    """FLUX.1-dev's architecture: transformer 11.9 B parameters at REAL sizes, T5-XXL."""
    double, single, heads, head_dim = sizes.flux
    d_model, d_ff, layers, t5_heads = sizes.t5
    rope = (16, 56, 56) if sizes is REAL else (4, 6, 6)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=double, num_single_layers=single,
        attention_head_dim=head_dim, num_attention_heads=heads, joint_attention_dim=d_model,
        pooled_projection_dim=sizes.clip[0], guidance_embeds=True, axes_dims_rope=rope)
    t5 = T5EncoderModel(T5Config(d_model=d_model, d_ff=d_ff, num_layers=layers,
                                 num_heads=t5_heads, d_kv=d_model // t5_heads,
                                 feed_forward_proj="gated-gelu", vocab_size=32128,
                                 is_encoder_decoder=False))
    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True,
                                                  base_shift=0.5, max_shift=1.15),
        vae=_vae(sizes, 16, use_quant_conv=False, use_post_quant_conv=False,
                 scaling_factor=0.3611, shift_factor=0.1159),
        text_encoder=_clip(*sizes.clip, False), tokenizer=_clip_tokenizer(work / "flux-clip"),
        text_encoder_2=t5, tokenizer_2=_t5_tokenizer(), transformer=transformer)


def build(arch: str, sizes: Sizes, work: Path, device: torch.device,
          dtype: torch.dtype) -> Any:
    """The pipeline, its weights made directly on ``device`` in ``dtype``."""
    previous = torch.get_default_dtype()
    torch.manual_seed(0)
    try:
        torch.set_default_dtype(dtype)
        with device:
            pipeline = sdxl(sizes, work) if arch == "sdxl" else flux(sizes, work)
    finally:
        torch.set_default_dtype(previous)
    pipeline.to(device)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline
