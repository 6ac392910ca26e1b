"""diffusers-style pipeline checks (the behaviours diffusers' ``PipelineTesterMixin`` exercises), run as one
mixin against every vistok pipeline with the tiny random pipelines the family tests build."""

from __future__ import annotations

import math

import pytest
import torch

import vistok  # noqa: F401  (registers the model types)
from vistok import NextScalePipeline
from vistok.cli import main as cli_main

from test_llamagen import c2i, converted, t2i  # noqa: F401  (module fixtures: tiny LlamaGen c2i/t2i pipelines)
from test_maskgit import pipelines, tokenizer_folder  # noqa: F401  (tiny MaskGIT pipelines)
from test_open_magvit2 import ibq_pipe, omagvit2_converted, omagvit2_pipe  # noqa: F401  (tiny factorized / IBQ AR pipelines)
from test_maskgen import converted as maskgen_converted  # noqa: F401  (tiny MaskGen-VQ pipelines)
from test_maskgen_kl import converted as maskgen_kl_converted  # noqa: F401  (tiny MaskGen-KL pipelines)
from test_var import META, original_release
from test_tokenflow import tokenflow_converted  # noqa: F401  (the tiny TokenFlow tokenizers)
from test_tokenflow import t2i_pipeline  # noqa: F401  (the tiny TokenFlow-t2i pipeline)
from test_instella import ar_pipeline, diffusion_pipeline, instella_bae_folder  # noqa: F401  (tiny Instella-T2I AR / diffusion pipelines)

PIPELINES = ("maskgit", "autoregressive", "text_to_image", "next_scale", "next_scale_text", "factorized_autoregressive",
             "adaln_autoregressive", "tokenflow_t2i", "binary_text_to_image", "binary_diffusion", "maskgen", "maskgen_kl")
# the step tensors a pipeline's callback sees when they are not (token_ids, logits): MaskGen-KL's continuous tokens
CALLBACK_TENSORS = {"maskgen_kl": ("latents", "mask")}
# pipelines whose samples are continuous: fp32 BLAS results depend on the batch size and on memory alignment (a
# deep copy changes them in the last bits), and a random-weight diffusion head amplifies the tokens to ~1e5, so
# "the same sample" is equality up to 1e-4 of the sample's scale there; token ids are compared exactly
CONTINUOUS = {"maskgen_kl"}


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (benchmarks/gpu_checks.sh)")


def same(name: str, a: torch.Tensor, b: torch.Tensor) -> bool:
    if name not in CONTINUOUS:
        return torch.equal(a, b)
    return a.shape == b.shape and bool(((a - b).abs() <= 1e-4 * b.abs().max().clamp(min=1.0)).all())


@pytest.fixture(scope="module")
def next_scale(tmp_path_factory):
    """The tiny VAR pipeline of test_var's "main" variant, converted the same way."""
    root = tmp_path_factory.mktemp("var-conformance")
    meta = META["variants"]["main"]
    vae_sd, var_sd = original_release(meta)
    torch.save(vae_sd, root / "vae.pth")
    torch.save(var_sd, root / "var.pth")
    nums = ",".join(map(str, meta["vae_config"]["v_patch_nums"]))
    assert cli_main(["convert", "var-vqvae", "--original", str(root / "vae.pth"), "--patch-nums", nums, "--output", str(root / "tok")]) == 0
    assert cli_main(["convert", "var", "--original", str(root / "var.pth"), "--tokenizer", str(root / "tok"),
                     "--output", str(root / "pipe")]) == 0
    return NextScalePipeline.from_pretrained(root / "pipe")


@pytest.fixture(scope="module")
def next_scale_text(tmp_path_factory):
    """The tiny STAR pipeline of test_star's "main" variant, converted without a text encoder (optional components None)."""
    from test_star import META as STAR_META
    from test_star import original_release as star_release

    root = tmp_path_factory.mktemp("star-conformance")
    meta = STAR_META["variants"]["main"]
    vae_sd, star_sd = star_release(meta)
    torch.save(vae_sd, root / "vae.pth")
    torch.save({"trainer": {"var_wo_ddp": star_sd}}, root / "star.pth")
    nums = ",".join(map(str, meta["vae_config"]["v_patch_nums"]))
    assert cli_main(["convert", "star", "--original", str(root / "star.pth"), "--tokenizer", str(root / "vae.pth"),
                     "--patch-nums", nums, "--output", str(root / "pipe")]) == 0
    pipe = vistok.NextScaleTextToImagePipeline.from_pretrained(root / "pipe")
    # the releases' cross-attention gives every sample sample 0's output (the original's quirk, kept by default), which
    # couples the images of a batch; the per-image checks here run with the documented flag that turns it off
    pipe.transformer.config.cross_attention_first_sample_only = False
    return pipe


@pytest.fixture(scope="module")
def tokenflow_t2i(t2i_pipeline):
    """The tiny TokenFlow-t2i pipeline of test_tokenflow without its text tokenizer (the optional component left
    out): prompts go in as token ids."""
    return vistok.TokenFlowTextToImagePipeline(image_tokenizer=t2i_pipeline.image_tokenizer,
                                               transformer=t2i_pipeline.transformer)


@pytest.fixture(params=PIPELINES)
def case(request):
    """(pipeline, inputs for a batch of ``n`` images, the name of the sampling argument that is a guidance scale)."""
    name = request.param
    if name == "maskgit":
        pipe = request.getfixturevalue("pipelines")["imagebert"][0]
        inputs = lambda n: {"class_labels": list(range(n))}  # noqa: E731
    elif name == "autoregressive":
        pipe = request.getfixturevalue("c2i")
        inputs = lambda n: {"class_labels": list(range(n)), "top_k": 10}  # noqa: E731
    elif name == "text_to_image":
        pipe = request.getfixturevalue("t2i")
        cfg = pipe.transformer.config
        embeds = torch.randn(3, cfg.num_condition_tokens, cfg.caption_dim, generator=torch.Generator().manual_seed(0))
        inputs = lambda n: {"prompt_embeds": embeds[:n], "top_k": 10}  # noqa: E731
    elif name == "factorized_autoregressive":
        pipe = request.getfixturevalue("omagvit2_pipe")
        inputs = lambda n: {"class_labels": list(range(n)), "top_k": (2, 10)}  # noqa: E731  (per sub-token)
    elif name == "adaln_autoregressive":
        pipe = request.getfixturevalue("ibq_pipe")
        inputs = lambda n: {"class_labels": list(range(n)), "top_k": 10}  # noqa: E731
    elif name == "next_scale":
        pipe = request.getfixturevalue("next_scale")
        inputs = lambda n: {"class_labels": list(range(n))}  # noqa: E731
    elif name == "tokenflow_t2i":
        pipe = request.getfixturevalue("tokenflow_t2i")
        prompts = [[1, 5, 6, 7], [1, 9, 10], [1, 11, 12, 13, 14]]
        # the negative prompt as a tuple: one for every image, not sliced per image by the checks
        inputs = lambda n: {"prompt_ids": prompts[:n], "negative_prompt_ids": (1, 20, 21), "top_k": 10}  # noqa: E731
    elif name == "binary_text_to_image":
        pipe = request.getfixturevalue("ar_pipeline")
        cfg = pipe.transformer.config
        g = torch.Generator().manual_seed(0)
        states = torch.randn(3, cfg.num_hidden_layers, 5, cfg.text_hidden_size, generator=g)
        neg_states = torch.randn(3, cfg.num_hidden_layers, 5, cfg.text_hidden_size, generator=g)
        inputs = lambda n: {"prompt_embeds": states[:n], "negative_prompt_embeds": neg_states[:n]}  # noqa: E731
    elif name == "binary_diffusion":
        pipe = request.getfixturevalue("diffusion_pipeline")
        cfg = pipe.transformer.config
        g = torch.Generator().manual_seed(0)
        states = torch.randn(3, cfg.num_hidden_layers, 5, cfg.text_hidden_size, generator=g)
        neg_states = torch.randn(3, cfg.num_hidden_layers, 5, cfg.text_hidden_size, generator=g)
        inputs = lambda n: {"prompt_embeds": states[:n], "negative_prompt_embeds": neg_states[:n],  # noqa: E731
                            "num_inference_steps": 3}
    elif name == "maskgen":
        # converted without a text encoder (optional components None): CLIP features given, 4 of the 8 tokens' steps
        pipe = request.getfixturevalue("maskgen_converted")[0]
        g = torch.Generator().manual_seed(0)
        width, length = pipe.transformer.config.text_hidden_size, pipe.image_tokenizer.config.text_max_length
        states, pooled, last = (torch.randn(3, length, width, generator=g), torch.randn(3, width, generator=g),
                                torch.randn(3, length, width, generator=g))
        neg_states, neg_pooled = torch.randn(3, length, width, generator=g), torch.randn(3, width, generator=g)
        inputs = lambda n: {"prompt_embeds": states[:n], "pooled_prompt_embeds": pooled[:n],  # noqa: E731
                            "negative_prompt_embeds": neg_states[:n], "negative_pooled_prompt_embeds": neg_pooled[:n],
                            "decoder_prompt_embeds": last[:n], "num_inference_steps": 4}
    elif name == "maskgen_kl":
        # as "maskgen", over continuous tokens: 3 rounds of 3 diffusion-head steps
        pipe = request.getfixturevalue("maskgen_kl_converted")[0]
        g = torch.Generator().manual_seed(0)
        width, length = pipe.transformer.config.text_hidden_size, pipe.image_tokenizer.config.text_max_length
        states, pooled, last = (torch.randn(3, length, width, generator=g), torch.randn(3, width, generator=g),
                                torch.randn(3, length, width, generator=g))
        neg_states, neg_pooled = torch.randn(3, length, width, generator=g), torch.randn(3, width, generator=g)
        inputs = lambda n: {"prompt_embeds": states[:n], "pooled_prompt_embeds": pooled[:n],  # noqa: E731
                            "negative_prompt_embeds": neg_states[:n], "negative_pooled_prompt_embeds": neg_pooled[:n],
                            "decoder_prompt_embeds": last[:n], "num_inference_steps": 3, "num_diffusion_steps": 3}
    else:
        pipe = request.getfixturevalue("next_scale_text")
        width = pipe.transformer.config.text_hidden_size
        g = torch.Generator().manual_seed(0)
        states, pooled = torch.randn(3, 8, width, generator=g), torch.randn(3, width, generator=g)
        neg_states, neg_pooled = torch.randn(3, 8, width, generator=g), torch.randn(3, width, generator=g)
        inputs = lambda n: {"prompt_embeds": states[:n], "pooled_prompt_embeds": pooled[:n],  # noqa: E731
                            "negative_prompt_embeds": neg_states[:n], "negative_pooled_prompt_embeds": neg_pooled[:n], "top_k": 10}
    pipe.set_progress_bar_config(disable=True)
    return name, pipe, inputs


def _ids(pipe, kwargs, generator):
    return pipe(**kwargs, generator=generator, output_type="latent").images


class TestPipelineConformance:
    """One check per behaviour, each run against every pipeline."""

    def test_list_of_generators_gives_each_image_its_own_randomness(self, case):
        name, pipe, inputs = case
        sample = lambda kw, g: _ids(pipe, kw, g)  # noqa: E731
        batch = sample(inputs(2), [torch.Generator().manual_seed(11), torch.Generator().manual_seed(12)])
        for i, seed in enumerate((11, 12)):
            alone = {k: (v[i:i + 1] if isinstance(v, (list, torch.Tensor)) else v) for k, v in inputs(2).items()}
            assert same(name, batch[i:i + 1], sample(alone, torch.Generator().manual_seed(seed)))

    def test_generator_list_length_and_type(self, case):
        _, pipe, inputs = case
        with pytest.raises(ValueError, match=r"generator is a list of 1 generators but 2 images are generated"):
            pipe(**inputs(2), generator=[torch.Generator()], output_type="pt")
        with pytest.raises(TypeError, match="generator must be a torch.Generator or a list of them"):
            pipe(**inputs(1), generator=0, output_type="pt")

    @pytest.mark.parametrize("value", [math.nan, math.inf, -1.0])
    def test_guidance_scale_must_be_finite_and_non_negative(self, case, value):
        _, pipe, inputs = case
        with pytest.raises(ValueError, match="guidance_scale must be >= 0"):
            pipe(**inputs(1), guidance_scale=value, output_type="pt")

    def test_class_names_via_id2label(self, case):
        name, pipe, inputs = case
        if name in ("text_to_image", "next_scale_text", "tokenflow_t2i", "binary_text_to_image", "binary_diffusion",
                    "maskgen", "maskgen_kl"):
            pytest.skip("text-conditional: no class labels")
        names = {int(i): str(label) for i, label in pipe.transformer.config.id2label.items()}
        assert names, "the tiny transformer config has an id2label"
        first = names[min(names)]
        g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
        by_name = pipe(class_labels=[first], generator=g(), output_type="pt").images
        by_id = pipe(class_labels=torch.tensor([min(names)]), generator=g(), output_type="pt").images
        assert torch.equal(by_name, by_id)
        with pytest.raises(ValueError, match=r"unknown class name\(s\) \['astronaut', 'rocket'\]; this model's classes are \["):
            pipe(class_labels=["astronaut", first, "rocket"], output_type="pt")

    def test_output_types_agree(self, case):
        name, pipe, inputs = case
        g = lambda: torch.Generator().manual_seed(9)  # noqa: E731
        pt = pipe(**inputs(1), generator=g(), output_type="pt").images
        np_images = pipe(**inputs(1), generator=g(), output_type="np").images
        (pil,) = pipe(**inputs(1), generator=g(), output_type="pil").images
        ids = pipe(**inputs(1), generator=g(), output_type="latent").images
        assert pt.ndim == 4 and np_images.shape == tuple(pt.permute(0, 2, 3, 1).shape) and pil.size == tuple(pt.shape[-2:])
        assert torch.allclose(pt.permute(0, 2, 3, 1), torch.from_numpy(np_images))
        # "latent": token ids, or the continuous tokens of a KL generator
        assert (ids.dtype == torch.long or (name == "maskgen_kl" and ids.is_floating_point())) and ids.shape[0] == 1
        with pytest.raises(ValueError, match="output_type must be 'pil', 'np', 'pt' or 'latent'"):
            pipe(**inputs(1), output_type="jpg")

    def test_return_dict_false_gives_a_tuple(self, case):
        _, pipe, inputs = case
        g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
        as_dict = pipe(**inputs(1), generator=g(), output_type="np").images
        (as_tuple,) = pipe(**inputs(1), generator=g(), output_type="np", return_dict=False)
        assert (as_dict == as_tuple).all()

    def test_save_load_round_trip_gives_equal_outputs(self, case, tmp_path):
        name, pipe, inputs = case
        pipe.save_pretrained(tmp_path)
        again = type(pipe).from_pretrained(tmp_path)
        again.set_progress_bar_config(disable=True)
        g = lambda: torch.Generator().manual_seed(7)  # noqa: E731
        assert same(name, pipe(**inputs(2), generator=g(), output_type="pt").images,
                           again(**inputs(2), generator=g(), output_type="pt").images)

    def test_num_images_per_prompt_repeats_each_prompt(self, case):
        name, pipe, inputs = case
        g = lambda: torch.Generator().manual_seed(4)  # noqa: E731
        repeated = {k: (v * 2 if isinstance(v, list) else torch.cat([v, v]) if isinstance(v, torch.Tensor) else v)
                    for k, v in inputs(1).items()}
        images = pipe(**inputs(1), num_images_per_prompt=2, generator=g(), output_type="latent").images
        assert images.shape[0] == 2
        assert same(name, images, pipe(**repeated, generator=g(), output_type="latent").images)
        with pytest.raises(ValueError, match="num_images_per_prompt must be >= 1"):
            pipe(**inputs(1), num_images_per_prompt=0, output_type="latent")

    def test_callback_on_step_end_sees_every_step_and_its_tensors(self, case):
        name, pipe, inputs = case
        seen = []
        tokens, other = CALLBACK_TENSORS.get(name, ("token_ids", "logits"))

        def callback(p, step, timestep, kwargs):
            assert p is pipe and set(kwargs) == {tokens, other}
            seen.append((step, kwargs[tokens].shape[0], kwargs[other].shape[0]))
            return {}

        g = lambda: torch.Generator().manual_seed(6)  # noqa: E731
        with_callback = pipe(**inputs(1), generator=g(), output_type="latent", callback_on_step_end=callback,
                             callback_on_step_end_tensor_inputs=[tokens, other]).images
        assert [s[0] for s in seen] == list(range(len(seen))) and len(seen) >= 2 and all(s[1] == 1 for s in seen)
        # a callback that returns nothing changes nothing
        assert same(name, with_callback, pipe(**inputs(1), generator=g(), output_type="latent").images)
        with pytest.raises(ValueError, match=r"callback_on_step_end_tensor_inputs \['nope'\] are not available"):
            pipe(**inputs(1), output_type="latent", callback_on_step_end=callback, callback_on_step_end_tensor_inputs=["nope"])

    def test_callback_can_replace_the_token_ids(self, case):
        name, pipe, inputs = case
        if name in ("next_scale", "next_scale_text"):
            pytest.skip("next-scale: a scale's ids are final once drawn; its callback may replace f_hat instead")

        tokens = CALLBACK_TENSORS.get(name, ("token_ids",))[0]

        def zero_tokens(p, step, timestep, kwargs):
            return {tokens: torch.zeros_like(kwargs[tokens])}

        ids = pipe(**inputs(1), generator=torch.Generator().manual_seed(1), output_type="latent",
                   callback_on_step_end=zero_tokens, callback_on_step_end_tensor_inputs=[tokens]).images
        assert int(ids.flatten()[-1]) == 0

    def test_diffusion_pipeline_from_pretrained(self, case, tmp_path):
        """diffusers' custom-pipeline mechanism: the folder names its class file; diffusers asks for
        trust_remote_code before importing it (the file only imports vistok)."""
        from diffusers import DiffusionPipeline

        name, pipe, inputs = case
        pipe.save_pretrained(tmp_path)
        loaded = DiffusionPipeline.from_pretrained(tmp_path, trust_remote_code=True)
        assert type(loaded) is type(pipe)
        loaded.set_progress_bar_config(disable=True)
        g = lambda: torch.Generator().manual_seed(2)  # noqa: E731
        assert same(name, pipe(**inputs(1), generator=g(), output_type="latent").images,
                           loaded(**inputs(1), generator=g(), output_type="latent").images)

    def test_diffusion_pipeline_from_pretrained_hub_id_offline(self, case, tmp_path, monkeypatch):
        """A repo id resolves from the local hub cache with HF_HUB_OFFLINE=1 (the snapshot layout huggingface_hub
        writes: ``models--org--name/snapshots/<sha>`` and ``refs/main``), through diffusers' own entry point."""
        import shutil

        import huggingface_hub.constants as hf_constants
        from diffusers import DiffusionPipeline

        name, pipe, inputs = case
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
        pipe.save_pretrained(tmp_path / "saved")
        repo = tmp_path / "cache" / "models--someone--tiny-pipe"
        shutil.copytree(tmp_path / "saved", repo / "snapshots" / ("0" * 40))
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text("0" * 40)
        loaded = DiffusionPipeline.from_pretrained("someone/tiny-pipe", cache_dir=tmp_path / "cache", trust_remote_code=True)
        assert type(loaded) is type(pipe)
        again = type(pipe).from_pretrained("someone/tiny-pipe", cache_dir=tmp_path / "cache")
        for other in (loaded, again):
            other.set_progress_bar_config(disable=True)
            g = torch.Generator().manual_seed(3)
            assert same(name, pipe(**inputs(1), generator=torch.Generator().manual_seed(3), output_type="latent").images,
                               other(**inputs(1), generator=g, output_type="latent").images)

    def test_to_dtype_moves_every_component(self, case):
        """``pipe.to(dtype)`` (diffusers' test_to_dtype): every component follows; images still come back as fp32."""
        import copy

        _, pipe, inputs = case
        low = copy.deepcopy(pipe).to(torch.bfloat16)
        modules = {name: c for name, c in low.components.items() if isinstance(c, torch.nn.Module)}
        assert modules and all(m.dtype == torch.bfloat16 for m in modules.values()), {n: m.dtype for n, m in modules.items()}
        images = low(**inputs(2), generator=torch.Generator().manual_seed(0), output_type="pt").images
        assert images.dtype == torch.float32 and images.shape[0] == 2 and torch.isfinite(images).all()
        assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0

    def test_model_cpu_offload_gives_the_same_images(self, case):
        """``enable_model_cpu_offload`` (accelerate hooks following ``model_cpu_offload_seq``) changes nothing in
        the output; on this CPU-only machine the execution device is the CPU."""
        import copy

        name, pipe, inputs = case
        offloaded = copy.deepcopy(pipe)
        offloaded.enable_model_cpu_offload(device="cpu")
        g = lambda: torch.Generator().manual_seed(8)  # noqa: E731
        assert same(name, pipe(**inputs(1), generator=g(), output_type="latent").images,
                           offloaded(**inputs(1), generator=g(), output_type="latent").images)

    def test_optional_components_save_and_load_as_none(self, case, tmp_path):
        """diffusers' test_save_load_optional_components: optional components left out are saved as null and
        load back as None; generation from embeddings is unchanged."""
        import json

        name, pipe, inputs = case
        optional = list(type(pipe)._optional_components)
        if not optional:
            pytest.skip(f"{type(pipe).__name__} has no optional components")
        assert all(getattr(pipe, name) is None for name in optional)
        pipe.save_pretrained(tmp_path)
        index = json.loads((tmp_path / "model_index.json").read_text())
        assert all(index[name] == [None, None] for name in optional)
        again = type(pipe).from_pretrained(tmp_path)
        again.set_progress_bar_config(disable=True)
        assert all(getattr(again, name) is None for name in optional)
        g = lambda: torch.Generator().manual_seed(12)  # noqa: E731
        assert same(name, pipe(**inputs(1), generator=g(), output_type="latent").images,
                           again(**inputs(1), generator=g(), output_type="latent").images)

    # diffusers' accelerator checks (test_to_device, test_float16_inference, test_model_cpu_offload_forward_pass): they
    # run where CUDA is (benchmarks/gpu_checks.sh runs them on a lent GPU) and are skipped elsewhere
    @CUDA
    def test_to_cuda_generates_on_the_device(self, case):
        """``pipe.to("cuda")`` moves every component; inputs given on the CPU are moved by the pipeline; images come
        back as fp32 in [0, 1] with the CPU run's shape; the same CUDA generator seed gives the same sample."""
        import copy

        name, pipe, inputs = case
        cuda = copy.deepcopy(pipe).to("cuda")
        modules = [c for c in cuda.components.values() if isinstance(c, torch.nn.Module)]
        assert all(p.device.type == "cuda" for m in modules for p in m.parameters())
        g = lambda: torch.Generator("cuda").manual_seed(4)  # noqa: E731
        images = cuda(**inputs(2), generator=g(), output_type="pt").images
        expected = pipe(**inputs(2), generator=torch.Generator().manual_seed(4), output_type="pt").images
        assert images.shape == expected.shape and images.dtype == torch.float32 and torch.isfinite(images).all()
        assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0
        assert same(name, cuda(**inputs(2), generator=g(), output_type="latent").images,
                    cuda(**inputs(2), generator=g(), output_type="latent").images)

    @CUDA
    @pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
    def test_half_precision_on_cuda(self, case, dtype):
        """``pipe.to("cuda", dtype)`` (diffusers' test_float16_inference): every component follows and the images are
        finite fp32 in [0, 1]. (Token samples of a random model differ from fp32's by rounding, so they are not compared.)"""
        import copy

        _, pipe, inputs = case
        low = copy.deepcopy(pipe).to("cuda", dtype)
        assert all(c.dtype == dtype for c in low.components.values() if isinstance(c, torch.nn.Module))
        images = low(**inputs(2), generator=torch.Generator("cuda").manual_seed(0), output_type="pt").images
        assert images.dtype == torch.float32 and torch.isfinite(images).all()
        assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0

    @CUDA
    def test_model_cpu_offload_to_cuda_gives_the_same_samples(self, case):
        """``enable_model_cpu_offload(device="cuda")`` computes on the GPU what ``pipe.to("cuda")`` computes."""
        import copy

        name, pipe, inputs = case
        offloaded, cuda = copy.deepcopy(pipe), copy.deepcopy(pipe).to("cuda")
        offloaded.enable_model_cpu_offload(device="cuda")
        g = lambda: torch.Generator("cuda").manual_seed(8)  # noqa: E731
        assert same(name, cuda(**inputs(1), generator=g(), output_type="latent").images.cpu(),
                    offloaded(**inputs(1), generator=g(), output_type="latent").images.cpu())


def test_every_pipeline_class_is_checked():
    """A family added later must add its pipeline (through a ``case``) to the checks above."""
    from vistok.families import families

    covered = {"MaskGITPipeline", "AutoregressiveImagePipeline", "TextToImageAutoregressivePipeline", "NextScalePipeline",
               "NextScaleTextToImagePipeline", "FactorizedAutoregressiveImagePipeline", "TokenFlowTextToImagePipeline",
               "BinaryAutoregressiveTextToImagePipeline", "BinaryDiffusionTextToImagePipeline", "MaskGenPipeline",
               "MaskGenKLPipeline"}
    used = {name for fam in families() for spec in fam.generators for name in (spec.pipeline, spec.text_pipeline) if name}
    assert used <= covered, f"add conformance cases for {sorted(used - covered)}"
