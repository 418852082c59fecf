"""A tiny Stable Diffusion pipeline with random weights, built and saved by the tests.

Every part is the real architecture at toy size: a two-block ``UNet2DConditionModel``, a
two-block ``AutoencoderKL``, a two-layer ``CLIPTextModel`` and a ``CLIPTokenizer`` read from a
handmade ``vocab.json`` and ``merges.txt``. Saved with ``save_pretrained`` it loads back through
the route's own ``from_pretrained`` code in well under a second, and a 64x64 image in 2 steps
takes a fraction of a second on one CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

WORDS = ("a", "fox", "cat", "red", "blue", "green", "the", "on", "hill", "sky", "dog", "at",
         "dawn", "sea", "tree")
MAX_TOKENS = 16


def write_tokenizer(directory: Path) -> CLIPTokenizer:
    """A CLIP tokenizer whose vocabulary is ``WORDS`` (one token per word, no merges)."""
    directory.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "!": 2}
    for word in WORDS:
        vocab[word + "</w>"] = len(vocab)
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"),
                         model_max_length=MAX_TOKENS)


def build_tiny_pipeline(work: Path) -> StableDiffusionPipeline:
    torch.manual_seed(0)
    tokenizer = write_tokenizer(work / "tokenizer-source")
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=8, in_channels=4,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=16,
        norm_num_groups=4, attention_head_dim=4)
    vae = AutoencoderKL(
        block_out_channels=(8, 8), in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), norm_num_groups=4,
        sample_size=16)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=16, intermediate_size=32,
        num_attention_heads=2, num_hidden_layers=2, vocab_size=len(tokenizer.get_vocab()),
        max_position_embeddings=MAX_TOKENS, projection_dim=16))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012,
                              beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    return StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text_encoder,
                                   tokenizer=tokenizer, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


def save_tiny_pipeline(work: Path) -> Path:
    """Build the pipeline and save it under ``work/pipeline``; the saved directory."""
    target = work / "pipeline"
    build_tiny_pipeline(work).save_pretrained(target)
    return target
