"""``tflite_multitask``: the keyword + scene network (micro_speech's "model")."""
from __future__ import annotations

from ..paths import resolve_build_path
from .base import HopContext, Param, Stage, register_stage

__all__ = ["MultitaskModelStage"]


@register_stage("tflite_multitask")
class MultitaskModelStage(Stage):
    """The keyword + scene network (micro_speech's "model"): every ``stride_hops`` hops, runs the
    int8 TFLite model on the last ``frames`` feature frames and writes each head's posteriors to
    ``posteriors.<head>`` as ``(t_audio_s, probabilities)``.

    Parameters: ``model`` (path; relative paths are tried in the cwd then under
    ``project.build_dir``); ``input`` (feature stream, default ``features.keyword``);
    ``stride_hops`` (default ``model.multitask.stride_hops``: 10 hops = 100 ms; fewer = earlier
    and smoother decisions at proportionally more CPU); ``num_threads`` (default
    ``runtime.num_threads``). The model is verified against its manifest, the profile's labels
    and the frontend before the first hop: a mismatch stops start-up with `ManifestError`.
    """

    PARAMS = {**Stage.PARAMS, "model": Param("the .tflite file"),
              "input": Param("the feature stream", "features.keyword"),
              "num_threads": Param("interpreter threads", None),
              "allow_tensorflow": Param("allow the tensorflow.lite fallback (host only)", False)}

    def __init__(self, name, params, cfg, pipeline_rate, hop_s):
        params = dict(params)
        params.setdefault("stride_hops", cfg.get("model.multitask.stride_hops", 10))
        params.setdefault("phase", params["stride_hops"] - 1)  # run once a full stride is in
        super().__init__(name, params, cfg, pipeline_rate, hop_s)
        from ..interpreter import TFLiteModel
        model = self.params["model"]
        self.input_key = self.params["input"]
        frontend_name = self.input_key.split(".", 1)[1]
        self.model = TFLiteModel(
            resolve_build_path(cfg, model),
            expected_labels={"keyword": cfg.keyword_labels, "scene": cfg["labels.scenes"]},
            frontend=cfg.section(f"frontend.{frontend_name}"),
            num_threads=int(self.params["num_threads"] or cfg["runtime.num_threads"]),
            allow_tensorflow=bool(self.params["allow_tensorflow"]))
        self.consumes = (self.input_key,)
        self.emits = tuple(f"posteriors.{h}" for h in self.model.outputs)
        self.invocations = 0

    def process(self, ctx: HopContext) -> None:
        window = ctx.data.get(self.input_key)
        if window is None:
            return
        frames = self.model.frames
        out = self.model.run(window[-frames:])
        self.invocations += 1
        for head, probs in out.items():
            ctx.put(f"posteriors.{head}", (ctx.t_audio_s, probs))

    def describe(self) -> dict:
        d = super().describe()
        d.update(model=str(self.model.path), backend=self.model.backend)
        return d
