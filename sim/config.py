"""The experiment config: the user's contract, as pydantic models that forbid unknown keys.

Every field has a type, a default and a one-line description; the README's config reference is
written from these models. Loading, `--set` overrides and error formatting live in `sim.loading`.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PolicySpec(BaseModel):
    """`{name: ..., <parameters>}`: parameters are checked against the named policy."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(description="registered policy name (see `simrun list`)")

    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class SchedulerSpec(PolicySpec):
    name: str = Field("vllm", description="registered scheduler name (see `simrun list`)")


class PreemptionSpec(PolicySpec):
    name: str = Field("recompute", description="registered preemption policy name")


class RouterSpec(PolicySpec):
    name: str = Field("round_robin", description="registered router name")


class HfModelRef(Section):
    hf_config: str = Field(description="path to a HuggingFace config.json (relative to the config file)")


class CostModelConfig(Section):
    kind: Literal["roofline", "constant"] = Field("roofline", description="how iteration times are predicted")
    iteration_overhead_s: float | None = Field(
        None, ge=0, description="roofline: fixed CPU/launch time per iteration (default 0.0005, assumed)"
    )
    compute_efficiency: float | None = Field(
        None, gt=0, le=1, description="roofline: share of peak FLOP/s reached (default: the hardware entry's)"
    )
    memory_efficiency: float | None = Field(
        None, gt=0, le=1, description="roofline: share of peak memory bandwidth reached (default: the hardware entry's)"
    )
    iteration_s: float = Field(0.01, gt=0, description="constant: seconds per iteration")
    per_token_s: float = Field(0.0, ge=0, description="constant: extra seconds per new token in the batch")


class ParallelConfig(Section):
    tp: int = Field(1, ge=1, description="tensor-parallel degree")
    pp: int = Field(1, ge=1, description="pipeline-parallel degree")


class ClusterConfig(Section):
    replicas: int = Field(1, ge=1, description="number of identical replicas in the unified pool")
    parallel: ParallelConfig = Field(default_factory=ParallelConfig, description="parallel plan of each replica")
    router: RouterSpec = Field(default_factory=RouterSpec, description="which replica gets an arrival")


class MemoryConfig(Section):
    block_size: int = Field(16, ge=1, description="tokens per KV block")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="share of device memory the replica may use")
    overhead_gib: float = Field(
        1.0, ge=0, description="per-device memory held outside weights and KV (CUDA context, graphs, buffers)"
    )
    max_model_len: int | None = Field(
        None, ge=1, description="longest prompt + output accepted (default: the model's context length)"
    )
    num_kv_blocks: int | None = Field(
        None, ge=1, description="fix the KV pool size in blocks instead of deriving it from memory"
    )


class CacheConfig(Section):
    prefix_caching: bool = Field(False, description="reuse KV of shared prompt prefixes (not available yet)")

    @model_validator(mode="after")
    def _not_yet(self) -> CacheConfig:
        if self.prefix_caching:
            raise ValueError("prefix caching is not available in this version of servesim; set it to false")
        return self


class TraceConfig(Section):
    path: str | None = Field(None, description="trace file (relative paths are relative to the config file)")
    sample: str | None = Field(None, description="name of a bundled sample trace instead of a path")
    format: Literal["azure", "mooncake", "ragpulse", "csv", "jsonl"] = Field("csv", description="trace file format")

    @model_validator(mode="after")
    def _one_source(self) -> TraceConfig:
        if (self.path is None) == (self.sample is None):
            raise ValueError("give exactly one of `path` and `sample`")
        return self


class ArrivalConfig(Section):
    process: Literal["poisson", "gamma", "constant"] = Field("poisson", description="inter-arrival process")
    rate: float = Field(1.0, gt=0, description="mean arrival rate, requests per second")
    cv: float | None = Field(None, gt=0, description="gamma: coefficient of variation of the gaps")

    @model_validator(mode="after")
    def _gamma_needs_cv(self) -> ArrivalConfig:
        if self.process == "gamma" and self.cv is None:
            raise ValueError("the gamma process needs `cv`")
        return self


class WorkloadConfig(Section):
    trace: TraceConfig | None = Field(None, description="replay a trace file instead of synthetic requests")
    arrival: ArrivalConfig | None = Field(None, description="synthetic arrival process")
    prompt_tokens: dict[str, Any] | None = Field(None, description="prompt length distribution `{dist: ...}`")
    output_tokens: dict[str, Any] | None = Field(None, description="output length distribution `{dist: ...}`")
    num_requests: int | None = Field(None, ge=1, description="synthetic: how many requests; trace: keep the first N")
    rate_scale: float = Field(1.0, gt=0, description="multiply the arrival rate (divide gaps) by this factor")
    start_s: float = Field(0.0, ge=0, description="trace: drop requests arriving before this time, shift to 0")
    end_s: float | None = Field(None, gt=0, description="trace: drop requests arriving at or after this time")

    @model_validator(mode="after")
    def _source_complete(self) -> WorkloadConfig:
        synthetic = {"arrival": self.arrival, "prompt_tokens": self.prompt_tokens, "output_tokens": self.output_tokens}
        if self.trace is not None:
            given = [k for k, v in synthetic.items() if v is not None]
            if given:
                raise ValueError(f"with a trace, lengths and arrivals come from it; remove {', '.join(given)}")
        else:
            missing = [k for k, v in synthetic.items() if v is None]
            if self.num_requests is None:
                missing.append("num_requests")
            if missing:
                raise ValueError(f"a synthetic workload needs {', '.join(missing)} (or give a `trace`)")
        return self


class SloConfig(Section):
    ttft_s: float | None = Field(None, gt=0, description="time-to-first-token objective")
    tpot_s: float | None = Field(None, gt=0, description="time-per-output-token objective")
    e2e_s: float | None = Field(None, gt=0, description="end-to-end latency objective")
    attainment_target: float = Field(0.9, gt=0, le=1, description="share of requests that must meet every SLO")


class SimulationConfig(Section):
    fast_forward: bool = Field(
        True, description="simulate stable decode-only stretches in one step (same results up to float rounding, much faster)"
    )


class OutputConfig(Section):
    dir: str | None = Field(None, description="results directory (default: results/<name>)")
    plots: bool = Field(True, description="write PNG plots")
    iterations: bool = Field(False, description="write iterations.parquet with one row per iteration")


class ExperimentConfig(Section):
    name: str = Field("experiment", description="experiment name, used for the default results directory")
    seed: int = Field(0, ge=0, description="seed of every random generator of the run")
    model: str | HfModelRef = Field("llama-3.1-8b", description="model catalog name, or `{hf_config: PATH}`")
    hardware: str = Field("h100-sxm", description="hardware catalog name")
    cost_model: CostModelConfig = Field(default_factory=CostModelConfig, description="iteration-time model")
    cluster: ClusterConfig = Field(default_factory=ClusterConfig, description="replicas, parallel plan, router")
    scheduler: SchedulerSpec = Field(default_factory=SchedulerSpec, description="batch scheduler and its parameters")
    preemption: PreemptionSpec = Field(default_factory=PreemptionSpec, description="preemption policy and its parameters")
    memory: MemoryConfig = Field(default_factory=MemoryConfig, description="paged KV memory")
    cache: CacheConfig = Field(default_factory=CacheConfig, description="KV caching")
    workload: WorkloadConfig = Field(description="requests to serve")
    slo: SloConfig = Field(default_factory=SloConfig, description="service-level objectives")
    simulation: SimulationConfig = Field(default_factory=SimulationConfig, description="engine options")
    output: OutputConfig = Field(default_factory=OutputConfig, description="what to write")
