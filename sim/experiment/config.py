"""The experiment config: the user's contract, as pydantic models that forbid unknown keys.

Every field has a type, a default and a one-line description; the README's config reference is
written from these models. Loading, `--set` overrides and error formatting live in `sim.experiment.loading`.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from servesim.sim.experiment.pools import pool_key, pool_memory, pool_problems

MAX_REPLICAS = 4096  # a sane cluster; each replica is a process with its own KV pools
MAX_SYNTHETIC_REQUESTS = 10_000_000  # the summary reads every request's row back (about 0.2 KiB each)


class Section(BaseModel):
    """A config section: unknown keys and non-finite numbers (.inf, .nan) are errors."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


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


class IntraGpuSplitSpec(PolicySpec):
    """`{name: static|proactive, <policy parameters>}` plus the SM-share model's own parameter."""

    name: str = Field(description="registered split policy name (`static`, `proactive`; see `simrun list`)")
    bandwidth_saturation_share: float = Field(
        0.4, gt=0, le=1, description="share of the SMs that saturates the device's memory bandwidth: beyond it "
        "memory-bound work (decode) gets no faster"
    )


class EvictionSpec(PolicySpec):
    name: str = Field("lru", description="registered eviction policy name")


class ModelRef(Section):
    """`{name: ...}` or `{hf_config: ...}`, optionally with the formats the model is served in."""

    name: str | None = Field(None, description="model catalog name")
    hf_config: str | None = Field(None, description="path to a HuggingFace config.json (relative to the config file)")
    weight_dtype: Literal["bf16", "fp16", "fp8", "int4"] | None = Field(
        None, description="serve the weights in this format (fp8: W8A8 where the GPU has fp8 units, else "
        "weight-only; int4: weight-only, groups of 128); default: the model's"
    )
    kv_dtype: Literal["bf16", "fp16", "fp8"] | None = Field(
        None, description="KV-cache format (fp8 halves KV bytes per token); default: the model's"
    )

    @model_validator(mode="after")
    def _one_model(self) -> ModelRef:
        if (self.name is None) == (self.hf_config is None):
            raise ValueError("give exactly one of `name` and `hf_config`")
        return self


class ExpertOffloadConfig(Section):
    gpu_experts: int = Field(ge=1, description="experts of each MoE layer kept in device memory (fewer than the "
                             "model's experts); the others wait in host memory")
    policy: Literal["lru"] = Field("lru", description="which resident expert a miss replaces")


class MoeConfig(Section):
    """How a MoE model's tokens spread over its experts, and where the experts live (roofline)."""

    routing: Literal["uniform", "zipf", "trace"] = Field(
        "uniform", description="expert popularity: uniform, Zipf-skewed (`zipf_s`), or counts from a routing `trace`"
    )
    zipf_s: float = Field(1.2, gt=0, description="zipf: popularity of the i-th most popular expert ~ 1 / i^zipf_s")
    trace: str | None = Field(
        None, description="trace: CSV of expert counts, `expert,count` or `layer,expert,count` rows (relative to the "
        "config file)"
    )
    seed: int = Field(0, ge=0, description="zipf: which experts are the popular ones (a shuffle seeded by this)")
    placement: list[Annotated[int, Field(ge=0)]] | None = Field(
        None, description="the EP rank of each expert, in expert order (default: dealt round-robin)"
    )
    locality: float = Field(
        0.0, ge=0, le=1, description="probability that a token's expert choice repeats its previous step's (what "
        "an expert cache hits)"
    )
    offload: ExpertOffloadConfig | None = Field(
        None, description="keep only some experts per layer in device memory, the rest in host memory"
    )

    @model_validator(mode="after")
    def _trace_given(self) -> MoeConfig:
        if (self.routing == "trace") != (self.trace is not None):
            raise ValueError("give `trace` (a CSV path) exactly when routing is `trace`")
        return self


class CostModelConfig(Section):
    kind: Literal["auto", "roofline", "constant", "table"] = Field(
        "auto", description="how iteration times are predicted; auto: the measured tables (as `table`) when the "
        "config names some or servesim ships them for the run's hardware, model and TP degree, else the roofline"
    )
    tables: str | None = Field(
        None, description="table, auto: directory of profiled cost tables (relative to the config file; default: the "
        "shipped tables for the run's hardware and model)"
    )
    source: Literal["aiconfigurator", "vidur", "profiled"] | None = Field(
        None, description="table, auto: which shipped table set (default: the first of aiconfigurator, vidur, profiled "
        "that has the run's hardware and model)"
    )
    moe_distribution: Literal["balanced", "power_law_1.01", "power_law_1.2"] = Field(
        "balanced", description="table, auto: measured token distribution across experts for MoE models (power_law_1.2 "
        "is the most skewed)"
    )
    iteration_overhead_s: float | None = Field(
        None, ge=0, description="roofline: fixed CPU/launch time per iteration (default 0: kernel time only; "
        "`engine` adds the engine's CPU time)"
    )
    compute_efficiency: float | None = Field(
        None, gt=0, le=1, description="roofline: share of peak FLOP/s reached (default: the hardware entry's)"
    )
    memory_efficiency: float | None = Field(
        None, gt=0, le=1, description="roofline: share of peak memory bandwidth reached (default: the hardware entry's)"
    )
    link_gbps: float | None = Field(
        None, gt=0, description="roofline, table: bandwidth (GB/s per direction) of the link between a replica's "
        "devices (default: the hardware entry's); with tables, setting it or link_latency_us prices the "
        "collectives on this link by the ring formulas instead of from the tables' measured collectives, which "
        "describe the box that measured them"
    )
    link_latency_us: float | None = Field(
        None, ge=0, description="roofline, table: latency of that link per collective step (default: the hardware "
        "entry's); see link_gbps"
    )
    moe: MoeConfig | None = Field(
        None, description="roofline: MoE expert routing, EP placement and expert offloading (default: uniform "
        "routing, every expert on the device)"
    )
    iteration_s: float = Field(0.01, gt=0, description="constant: seconds per iteration")
    per_token_s: float = Field(0.0, ge=0, description="constant: extra seconds per new token in the batch")

    @model_serializer(mode="wrap")
    def _omit_absent_moe(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Without a `moe` section the key is not written (nor hashed), so a config that does not
        use it resolves and hashes as it did before the key existed."""
        data: dict[str, Any] = handler(self)
        if self.moe is None:
            data.pop("moe", None)
        return data


class ParallelConfig(Section):
    tp: int = Field(1, ge=1, description="tensor-parallel degree")
    pp: int = Field(1, ge=1, description="pipeline-parallel degree")
    ep: int = Field(1, ge=1, description="expert-parallel degree of a MoE model's experts, within the TP group "
                    "(must divide tp)")
    ep_across_replicas: bool = Field(
        False, description="the replicas are the DP ranks of one MoE engine whose experts are split over all "
        "replicas x tp devices (vLLM --data-parallel-size N --enable-expert-parallel)")


class LinkOverrideConfig(Section):
    gbps: float | None = Field(None, gt=0, description="per device and direction, GB/s (default: the hardware entry's)")
    latency_us: float | None = Field(None, ge=0, description="paid once per transfer (default: the hardware entry's)")


class TopologyConfig(Section):
    devices_per_node: int | None = Field(
        None, ge=1, description="devices per node (default: the hardware entry's `devices_per_node`)")
    intra_node: LinkOverrideConfig = Field(
        default_factory=LinkOverrideConfig, description="each device's port on its node's fabric (NVLink/NVSwitch "
        "or PCIe; default: the entry's `intra_node_link_gbps`, `link_latency_us`)")
    inter_node: LinkOverrideConfig = Field(
        default_factory=LinkOverrideConfig, description="each device's NIC between nodes (InfiniBand/RoCE; default: "
        "the entry's `inter_node_link_gbps`, `inter_node_latency_us`)")
    host: LinkOverrideConfig = Field(
        default_factory=LinkOverrideConfig, description="each device's PCIe link to host memory, which KV swapping "
        "crosses (default: the entry's `host_link_gbps`, 6 us)")

    def fit_problem(self, devices_per_replica: int, what: str) -> str | None:
        """Why `devices_per_node` cannot hold one replica of `what`, or None when it can."""
        if self.devices_per_node is None or self.devices_per_node >= devices_per_replica:
            return None
        return (f"cluster.topology.devices_per_node: {self.devices_per_node} devices per node cannot hold one "
                f"replica of {what} ({devices_per_replica} devices); set devices_per_node to at least "
                f"{devices_per_replica} or use a smaller parallel plan")


class TransferSpec(PolicySpec):
    name: str = Field("after_prefill", description="registered transfer policy name")


PoolRole = Literal["prefill", "decode", "unified"]


class PoolConfig(Section):
    """One pool of identical replicas with a role; unset keys take the top-level sections' values."""

    name: str = Field(description="pool name, unique in the cluster (results name pools by it)")
    role: PoolRole = Field("unified", description="prefill: prompts only, the KV then moves to a decode pool; "
                           "decode: decodes what prefill pools hand over; unified: both (no transfer)")
    replicas: int = Field(1, ge=0, le=MAX_REPLICAS, description="replicas in this pool")
    hardware: str | None = Field(None, description="hardware catalog name (default: the top-level `hardware`)")
    parallel: ParallelConfig = Field(default_factory=ParallelConfig, description="parallel plan of each replica "
                                     "(default: tp 1)")
    scheduler: SchedulerSpec | None = Field(None, description="batch scheduler (default: the top-level `scheduler`)")
    memory: dict[str, Any] = Field(default_factory=dict, description="keys of `memory` that differ for this pool "
                                   "(the rest: the top-level `memory`, key by key)")


class RoleSwitchingConfig(Section):
    """Dynamic roles (xLLM): prefill and decode instances switch roles as the load shifts."""

    policy: Literal["queue_pressure"] = Field("queue_pressure", description="the role-switching policy")
    interval_s: float = Field(1.0, gt=0, description="how often the policy is asked (seconds of simulated time)")
    switch_s: float = Field(0.0, ge=0, description="fixed cost of a switch, paid after the drain (weights stay)")
    window_s: float = Field(10.0, gt=0, description="the recent SLO attainment covers requests that ended this "
                            "long ago at most")
    prefill_tokens_high: int = Field(16384, ge=0, description="queue_pressure: queued prompt tokens per prefill "
                                     "instance above which the prefill side is under pressure")
    decode_seqs_high: int = Field(128, ge=1, description="queue_pressure: decoding requests per decode instance "
                                  "above which the decode side is under pressure")
    kv_high: float = Field(0.9, gt=0, le=1, description="queue_pressure: a decode instance's KV use above which the "
                           "decode side is under pressure")
    cooldown_s: float = Field(5.0, ge=0, description="queue_pressure: least time between two switches")


class ClusterConfig(Section):
    replicas: int = Field(
        1, ge=1, le=MAX_REPLICAS,
        description=f"number of identical replicas in the unified pool (at most {MAX_REPLICAS})",
    )
    parallel: ParallelConfig = Field(default_factory=ParallelConfig, description="parallel plan of each replica")
    router: RouterSpec = Field(default_factory=RouterSpec, description="which replica gets an arrival")
    pools: list[PoolConfig] | None = Field(
        None, description="pools with roles instead of `replicas`/`parallel` (prefill/decode disaggregation, "
        "heterogeneous hardware); see the README's \"Pools and disaggregation\""
    )
    transfer: TransferSpec = Field(
        default_factory=TransferSpec, description="prefill -> decode: which decode replica, and how the KV moves"
    )
    role_switching: RoleSwitchingConfig | None = Field(
        None, description="dynamic roles: prefill and decode instances switch under load shifts (see the README's "
        "\"Dynamic roles\")"
    )
    topology: TopologyConfig = Field(
        default_factory=TopologyConfig, description="nodes and links between devices (default: the hardware entry's)")

    @model_serializer(mode="wrap")
    def _omit_unused_defaults(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """A topology left at the hardware's figures, no pools and the default transfer are not
        written (nor hashed), so a config that does not use them resolves and hashes as it did
        before the keys existed; with pools, `replicas` and `parallel` (which they replace) are not."""
        data: dict[str, Any] = handler(self)
        if self.topology == TopologyConfig():
            data.pop("topology", None)
        if self.role_switching is None:
            data.pop("role_switching", None)
        if self.pools is None:
            data.pop("pools", None)
            if self.transfer == TransferSpec():
                data.pop("transfer", None)
        else:
            data.pop("replicas", None)
            data.pop("parallel", None)
        return data

    @model_validator(mode="after")
    def _topology_fits(self) -> ClusterConfig:
        plans = [(None, self.parallel)] if self.pools is None else [(p.name, p.parallel) for p in self.pools]
        for pool, parallel in plans:
            problem = self.topology.fit_problem(parallel.tp * parallel.pp, f"tp {parallel.tp} x pp {parallel.pp}")
            if problem:
                raise ValueError(problem if pool is None else f"{pool_key(pool)}: {problem}")
        return self

    @model_validator(mode="after")
    def _pools_well_formed(self) -> ClusterConfig:
        if self.pools is None:
            return self
        both = sorted({"replicas", "parallel"} & self.model_fields_set)
        if both:
            raise ValueError(f"cluster.pools replaces cluster.{' and cluster.'.join(both)}: give each pool its "
                             "`replicas` and `parallel` and remove the top-level one(s)")
        problems = pool_problems(self.pools)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _roles_to_switch(self) -> ClusterConfig:
        if self.role_switching is not None and not any(p.role == "prefill" for p in self.pools or ()):
            raise ValueError("cluster.role_switching switches instances between prefill and decode pools, but the "
                             "cluster has none; give `cluster.pools` a prefill and a decode pool, or remove "
                             "cluster.role_switching")
        return self


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
    swap_space_gib: float = Field(
        4.0, ge=0, description="per-device host memory for swapped-out KV (preemption `swap`; vLLM's default)"
    )


class CacheConfig(Section):
    prefix_caching: bool = Field(False, description="reuse the KV of prompt prefixes shared with earlier requests")
    eviction: EvictionSpec = Field(
        default_factory=EvictionSpec, description="which unreferenced cached block is reused first"
    )


class TraceConfig(Section):
    path: str | None = Field(None, description="trace file (relative paths are relative to the config file)")
    sample: str | None = Field(None, description="name of a bundled sample trace instead of a path")
    format: Literal["azure", "mooncake", "ragpulse", "csv", "jsonl", "parquet"] = Field(
        "csv", description="trace file format"
    )
    arrival_unit: Literal["s", "ms", "us", "ns"] | None = Field(
        None, description="csv/jsonl/parquet: unit of `arrival_s` (default: seconds, or a date's unit told by "
        "its size); times far from 0 are shifted to start at 0"
    )

    @model_validator(mode="after")
    def _one_source(self) -> TraceConfig:
        if (self.path is None) == (self.sample is None):
            raise ValueError("give exactly one of `path` and `sample`")
        if self.arrival_unit is not None and self.format not in ("csv", "jsonl", "parquet"):
            raise ValueError(f"arrival_unit applies to the csv, jsonl and parquet formats; the {self.format} format "
                             "has its own")
        return self


class ArrivalConfig(Section):
    process: Literal["poisson", "gamma", "constant", "batch"] = Field(
        "poisson", description="inter-arrival process (`batch`: every request at time 0, an offline batch)"
    )
    rate: float = Field(1.0, gt=0, description="mean arrival rate, requests per second")
    cv: float | None = Field(None, gt=0, description="gamma: coefficient of variation of the gaps")

    @model_validator(mode="after")
    def _gamma_needs_cv(self) -> ArrivalConfig:
        if self.process == "gamma" and self.cv is None:
            raise ValueError("the gamma process needs `cv`")
        return self


class ClassRule(Section):
    min_prompt_tokens: int | None = Field(None, ge=1, description="matches prompts of at least this many tokens")
    max_prompt_tokens: int | None = Field(None, ge=1, description="matches prompts of at most this many tokens")
    min_output_tokens: int | None = Field(None, ge=1, description="matches outputs of at least this many tokens")
    max_output_tokens: int | None = Field(None, ge=1, description="matches outputs of at most this many tokens")


class ObjectivesConfig(Section):
    ttft_s: float | None = Field(None, gt=0, description="this class's TTFT objective (default: `slo.ttft_s`)")
    tpot_s: float | None = Field(None, gt=0, description="this class's TPOT objective (default: `slo.tpot_s`)")
    e2e_s: float | None = Field(None, gt=0, description="this class's E2E objective (default: `slo.e2e_s`)")


class ClassConfig(Section):
    name: str = Field(description="class name, reported in `slo_class` and in the summary's `classes`")
    priority: int = Field(0, description="scheduling priority of its requests (smaller is more important)")
    share: float | None = Field(None, gt=0, le=1, description="class_by share: the fraction of requests in this class")
    when: ClassRule | None = Field(
        None, description="class_by rule: the lengths this class takes (none: every request)"
    )
    slo: ObjectivesConfig = Field(
        default_factory=ObjectivesConfig, description="objectives overriding `slo` for this class"
    )
    timeout_s: float | None = Field(None, gt=0, description="drop a request not yet scheduled this long after arrival")


class SharedPrefixConfig(Section):
    num_groups: int = Field(ge=1, description="distinct shared prefixes (documents, system prompts)")
    tokens: int = Field(ge=16, description="tokens of each shared prefix, prepended to the request's own prompt")
    share: float = Field(1.0, gt=0, le=1, description="fraction of requests that start with a shared prefix")


class ClientsConfig(Section):
    concurrency: int = Field(ge=1, description="closed-loop clients, each with one request outstanding at a time")
    think_time_s: float = Field(0.0, ge=0, description="mean pause between a client's answer and its next request")
    think_time: Literal["fixed", "exponential"] = Field("fixed", description="distribution of the think time")


class WorkloadConfig(Section):
    trace: TraceConfig | None = Field(None, description="replay a trace file instead of synthetic requests")
    arrival: ArrivalConfig | None = Field(None, description="synthetic arrival process")
    prompt_tokens: dict[str, Any] | None = Field(None, description="prompt length distribution `{dist: ...}`")
    output_tokens: dict[str, Any] | None = Field(None, description="output length distribution `{dist: ...}`")
    num_requests: int | None = Field(None, ge=1, description="synthetic: how many requests; trace: keep the first N")
    rate_scale: float = Field(1.0, gt=0, description="multiply the arrival rate (divide gaps) by this factor")
    start_s: float = Field(0.0, ge=0, description="trace: drop requests arriving before this time, shift to 0")
    end_s: float | None = Field(None, gt=0, description="trace: drop requests arriving at or after this time")
    shared_prefix: SharedPrefixConfig | None = Field(
        None, description="synthetic: prepend one of a few shared prefixes to requests (for prefix caching)"
    )
    clients: ClientsConfig | None = Field(
        None, description="closed loop instead of arrival times: requests (trace rows or sampled lengths) in order"
    )
    warmup_s: float | None = Field(None, ge=0, description="steady_state: ignore requests arriving before this time")
    warmup_requests: int | None = Field(None, ge=0, description="steady_state: ignore the first N requests to arrive")
    classes: list[ClassConfig] = Field(
        default_factory=list, description="request classes, each with a priority, objectives and timeout"
    )
    class_by: Literal["share", "rule", "column"] = Field(
        "share",
        description="how requests get their class: random `share`s, length `rule`s, or the trace's slo_class `column`",
    )

    @model_validator(mode="after")
    def _source_complete(self) -> WorkloadConfig:
        synthetic = {"arrival": self.arrival, "prompt_tokens": self.prompt_tokens, "output_tokens": self.output_tokens}
        if self.clients is not None:
            if self.arrival is not None:
                raise ValueError("closed-loop `clients` send requests as answers come back; remove `arrival`")
            synthetic.pop("arrival")
        if self.trace is not None:
            given = [k for k, v in {**synthetic, "shared_prefix": self.shared_prefix}.items() if v is not None]
            if given:
                raise ValueError(f"with a trace, lengths and arrivals come from it; remove {', '.join(given)}")
        else:
            missing = [k for k, v in synthetic.items() if v is None]
            if self.num_requests is None:
                missing.append("num_requests")
            if missing:
                raise ValueError(f"a synthetic workload needs {', '.join(missing)} (or give a `trace`)")
            if self.num_requests is not None and self.num_requests > MAX_SYNTHETIC_REQUESTS:
                raise ValueError(
                    f"num_requests {self.num_requests:,} is more than the {MAX_SYNTHETIC_REQUESTS:,} "
                    "synthetic requests whose rows the summary reads back into memory; simulate fewer (a steady "
                    "state needs far fewer) or split the run"
                )
        return self

    @model_validator(mode="after")
    def _classes_assignable(self) -> WorkloadConfig:
        names = [c.name for c in self.classes]
        if len(set(names)) != len(names):
            raise ValueError(f"class names must be unique, got {', '.join(names)}")
        if self.classes and self.class_by == "share":
            shares = [c.share for c in self.classes if c.share is not None]
            if len(shares) < len(self.classes):
                raise ValueError("with class_by: share every class needs a `share`")
            if abs(sum(shares) - 1.0) > 1e-6:
                raise ValueError(f"class shares must add up to 1, got {sum(shares):g}")
        return self


class SloConfig(Section):
    ttft_s: float | None = Field(None, gt=0, description="time-to-first-token objective")
    tpot_s: float | None = Field(None, gt=0, description="time-per-output-token objective")
    e2e_s: float | None = Field(None, gt=0, description="end-to-end latency objective")
    attainment_target: float = Field(0.9, gt=0, le=1, description="share of requests that must meet every SLO")


class SimulationConfig(Section):
    fast_forward: bool = Field(
        True,
        description="simulate stable decode-only stretches in one step "
        "(same results up to float rounding, much faster)",
    )
    workers: int | Literal["auto"] = Field(
        1, description="processes that simulate the replicas at once when nothing couples them (`auto`: one per "
        "CPU); otherwise the run stays in one process and says why. Results are the same",
    )

    @field_validator("workers")
    @classmethod
    def _workers_positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("must be at least 1, or `auto` (one process per CPU)")
        return value


class EngineConfig(Section):
    """The serving engine's own time beside the kernels (`sim.engine.overheads`); ignored by
    `cost_model.kind: constant`."""

    version: Literal["vllm-0.19", "none"] = Field(
        "vllm-0.19", description="engine whose fitted CPU and API-server times apply (`none`: an idealised engine)"
    )
    async_scheduling: bool = Field(
        True, description="plan step n+1 while step n runs: an arrival waits one extra step (vLLM >= 0.14)"
    )
    cuda_graphs: bool = Field(True, description="pad decode-only batches up to the next CUDA-graph capture size")
    cuda_graph_sizes: list[Annotated[int, Field(ge=1)]] | None = Field(
        None, description="capture sizes (default: vLLM's 1, 2, 4, 8..248 by 8, 256..min(2 x max_num_seqs, 512) by 16)"
    )
    cpu_per_iteration_s: float | None = Field(None, ge=0, description="CPU seconds per step (default: the fitted set)")
    cpu_per_sequence_s: float | None = Field(
        None, ge=0, description="CPU seconds per batch entry per step (default: fitted)"
    )
    cpu_per_eager_iteration_s: float | None = Field(
        None, ge=0, description="host seconds added to a step that does not run as one full CUDA graph "
        "(a prefill chunk in it, or more decodes than the largest capture size; default: fitted)"
    )
    api_server: bool = Field(
        True, description="model the API server's path in front of the engine (latencies then count from the client)"
    )
    api_fixed_s: float | None = Field(
        None, ge=0, description="API server: seconds from the client to the engine's queue (default: fitted)"
    )
    api_per_prompt_token_s: float | None = Field(
        None, ge=0, description="API server: tokenising, seconds per prompt token (default: fitted)"
    )
    api_stream_out_s: float | None = Field(
        None, ge=0, description="API server: seconds from the engine's token to the client (default: fitted)"
    )
    intra_gpu_split: IntraGpuSplitSpec | None = Field(
        None, description="run each replica's prefill and decode loops at once on one device, each on a share of "
        "its SMs chosen by this split policy (Nexus); none: one loop with mixed batches"
    )


class OutputConfig(Section):
    dir: str | None = Field(None, description="results directory (default: results/<name>)")
    plots: bool = Field(True, description="write PNG plots")
    iterations: bool = Field(False, description="write iterations.parquet with one row per iteration")
    per_token: bool = Field(False, description="write tokens.parquet with one row per output token (its emission time)")


class ClaimConfig(Section):
    metric: str = Field(description="summary.json key path compared across variants, e.g. `tbt_s.p99`")
    better: Literal["lower", "higher"] = Field(description="which direction of `metric` the claim says is better")
    variant: str = Field(description="the variant the claim is about")
    baselines: list[str] = Field(min_length=1, description="variants it is claimed to beat")
    source: str = Field("", description="the claim in words, with the paper it comes from")


SWEEP_RESERVED_KEYS = ("name", "sweep", "variants", "claim", "claims")


class SweepConfig(Section):
    """The points of a sweep: the cartesian product of its axes (see `sim.experiment.sweep_points`)."""

    grid: dict[str, list[Any]] = Field(
        default_factory=dict, description="dotted config key -> values; every combination of the keys is a point"
    )
    zip: dict[str, list[Any]] = Field(
        default_factory=dict, description="dotted config key -> values, all lists of one length advanced together "
        "(one axis of the grid)"
    )
    variants: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="named overrides (merged like `variants`), one axis of the grid"
    )
    seeds: list[Annotated[int, Field(ge=0)]] | None = Field(
        None, description="experiment seeds, the innermost axis (the same as a `grid` key `seed`)"
    )

    @model_validator(mode="after")
    def _axes_well_formed(self) -> SweepConfig:
        if not (self.grid or self.zip or self.variants or self.seeds is not None):
            raise ValueError("a sweep needs at least one of `grid`, `zip`, `variants`, `seeds`")
        for section, axis in (("grid", self.grid), ("zip", self.zip)):
            for key, values in axis.items():
                if not key or any(not part for part in key.split(".")) or key.strip() != key:
                    raise ValueError(f"{section}: {key!r} is not a dotted config key such as scheduler.max_num_seqs")
                if key.split(".")[0] in SWEEP_RESERVED_KEYS:
                    raise ValueError(f"{section}: {key!r} cannot be swept ({', '.join(SWEEP_RESERVED_KEYS)} are "
                                     "the sweep's own; named runs go under sweep.variants)")
                if not values:
                    raise ValueError(f"{section}: {key!r} has an empty list of values; give at least one")
        both = sorted(set(self.grid) & set(self.zip))
        if both:
            raise ValueError(f"{', '.join(both)} appear(s) in both `grid` and `zip`; sweep each key in one place")
        lengths = {key: len(values) for key, values in self.zip.items()}
        if len(set(lengths.values())) > 1:
            shown = ", ".join(f"{key}: {n}" for key, n in lengths.items())
            raise ValueError(f"zip: the lists advance together, so they need one length; got {shown}")
        if self.seeds is not None:
            if not self.seeds:
                raise ValueError("seeds: empty list; give at least one seed")
            if "seed" in self.grid or "seed" in self.zip:
                raise ValueError("`seed` is swept twice (`seeds` and a grid/zip key `seed`); keep one")
        if any(not name for name in self.variants):
            raise ValueError("variants: a variant name is empty")
        return self


PlanMode = Literal["unified", "disaggregated"]
PLAN_MODES: tuple[PlanMode, ...] = ("unified", "disaggregated")


class PlanConfig(Section):
    """A placement search for `simrun plan` (see `sim.placement`): which pools and plans to try on a GPU budget."""

    gpus: int = Field(ge=1, le=MAX_REPLICAS, description="GPU budget: a candidate uses at most this many devices")
    tp: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: [1, 2, 4, 8], description="tensor-parallel degrees tried (for each pool)"
    )
    pp: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: [1], description="pipeline-parallel degrees tried (for each pool)"
    )
    modes: list[PlanMode] = Field(
        default_factory=lambda: list(PLAN_MODES), description="unified: replicas that prefill and decode; "
        "disaggregated: a prefill pool and a decode pool, each with its own plan and count"
    )
    use_all_gpus: bool = Field(False, description="try only candidates that use exactly `gpus` devices")
    max_rate: float | None = Field(
        None, gt=0, description="highest arrival rate (requests/s) tried on a candidate using all `gpus`; one "
        "with fewer GPUs up to its share, so all meet the same per-GPU ceiling (default: 4 x the workload's rate "
        "x gpus)"
    )
    min_rate: float | None = Field(
        None, gt=0, description="lowest arrival rate tried on a candidate using all `gpus`, scaled likewise "
        "(default: max_rate / 256)"
    )
    tolerance: float = Field(0.05, gt=0, description="each candidate's rate search stops when its bracket is "
                             "this narrow (relative)")

    @model_validator(mode="after")
    def _searchable(self) -> PlanConfig:
        for key, values in (("tp", self.tp), ("pp", self.pp), ("modes", self.modes)):
            if not values:
                raise ValueError(f"plan.{key}: empty list; give at least one value")
            if len(set(values)) != len(values):
                raise ValueError(f"plan.{key}: {values} repeats a value; list each once")
        if self.min_rate is not None and self.max_rate is not None and self.min_rate >= self.max_rate:
            raise ValueError(f"plan.min_rate ({self.min_rate:g}) must be below plan.max_rate ({self.max_rate:g})")
        smallest = min(self.tp) * min(self.pp) * (2 if self.modes == ["disaggregated"] else 1)
        if smallest > self.gpus:
            raise ValueError(f"plan.gpus: {self.gpus} GPU(s) cannot hold the smallest candidate ({smallest} GPUs: "
                             f"tp {min(self.tp)} x pp {min(self.pp)}"
                             f"{' for each of two pools' if self.modes == ['disaggregated'] else ''}); "
                             "raise plan.gpus or add smaller degrees to plan.tp / plan.pp")
        return self


class ExperimentConfig(Section):
    name: str = Field("experiment", description="experiment name, used for the default results directory")
    seed: int = Field(0, ge=0, description="seed of every random generator of the run")
    model: str | ModelRef = Field(
        "llama-3.1-8b", description="model catalog name, or `{name: NAME}` / `{hf_config: PATH}` with optional "
        "`weight_dtype` and `kv_dtype`"
    )
    hardware: str = Field("h100-sxm", description="hardware catalog name")
    cost_model: CostModelConfig = Field(default_factory=CostModelConfig, description="iteration-time model")
    cluster: ClusterConfig = Field(default_factory=ClusterConfig, description="replicas, parallel plan, router")
    scheduler: SchedulerSpec = Field(default_factory=SchedulerSpec, description="batch scheduler and its parameters")
    preemption: PreemptionSpec = Field(
        default_factory=PreemptionSpec, description="preemption policy and its parameters"
    )
    memory: MemoryConfig = Field(default_factory=MemoryConfig, description="paged KV memory")
    cache: CacheConfig = Field(default_factory=CacheConfig, description="KV caching")
    workload: WorkloadConfig = Field(description="requests to serve")
    slo: SloConfig = Field(default_factory=SloConfig, description="service-level objectives")
    simulation: SimulationConfig = Field(default_factory=SimulationConfig, description="engine options")
    engine: EngineConfig = Field(default_factory=EngineConfig, description="the serving engine's own time")
    output: OutputConfig = Field(default_factory=OutputConfig, description="what to write")
    variants: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="named runs of this experiment, each overriding some keys "
        "(a mapping with `name` replaces a policy section whole)",
    )
    claim: ClaimConfig | None = Field(None, description="a comparison between variants that the run checks and reports")
    claims: list[ClaimConfig] = Field(
        default_factory=list, description="several such comparisons, each checked and reported (after `claim`)"
    )
    sweep: SweepConfig | None = Field(
        None, description="run the experiment at many points (a grid over keys, zipped lists, named variants, "
        "seeds) with `simrun sweep`"
    )
    plan: PlanConfig | None = Field(
        None, description="search pool sizes and parallel plans for a GPU budget with `simrun plan` (ignored by "
        "`simrun run`)"
    )

    @model_validator(mode="after")
    def _pool_memory_valid(self) -> ExperimentConfig:
        for pool in self.cluster.pools or ():
            pool_memory(self.memory, pool)
        return self

    @model_validator(mode="after")
    def _sweep_alone(self) -> ExperimentConfig:
        if self.sweep is not None and (self.variants or self.stated_claims):
            raise ValueError("a config with a `sweep` cannot also have top-level `variants` or claims; put named "
                             "runs under sweep.variants and compare them in the sweep's table")
        return self

    @model_serializer(mode="wrap")
    def _without_unset_keys(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """A config without a plan or `claims` dumps (and hashes, in `config.yaml` and `summary.json`) as
        before those keys existed."""
        data: dict[str, Any] = handler(self)
        if self.plan is None:
            data.pop("plan", None)
        if not self.claims:
            data.pop("claims", None)
        return data

    @model_validator(mode="after")
    def _prefix_affinity_needs_a_prefix_cache(self) -> ExperimentConfig:
        if self.cluster.router.name == "prefix_affinity" and not self.cache.prefix_caching:
            raise ValueError("cluster.router: prefix_affinity routes by what each replica's prefix cache holds, but "
                             "cache.prefix_caching is false, so it would only balance load; set "
                             "cache.prefix_caching: true, or choose a load-balancing router such as least_outstanding")
        return self

    @property
    def stated_claims(self) -> list[tuple[str, ClaimConfig]]:
        """Every claim with the key it is stated under: `claim`, then `claims[0]`, `claims[1]`, ..."""
        single = [("claim", self.claim)] if self.claim is not None else []
        return single + [(f"claims[{index}]", claim) for index, claim in enumerate(self.claims)]

    @model_validator(mode="after")
    def _claim_names_variants(self) -> ExperimentConfig:
        for key, claim in self.stated_claims:
            unknown = [v for v in (claim.variant, *claim.baselines) if v not in self.variants]
            if unknown:
                raise ValueError(
                    f"{key} names variant(s) {', '.join(unknown)}; variants: {', '.join(self.variants) or 'none'}"
                )
        return self
