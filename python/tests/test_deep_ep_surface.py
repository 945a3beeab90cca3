"""epcomm.deep_ep accepts DeepEP V1's surface (../shared/spec/deep_ep_api.md): names, argument
order, defaults; refuses unsupported features by name. Needs no torch and no GPU."""
import inspect

import pytest

import epcomm.deep_ep as deep_ep
from epcomm import _capi as c


def params(fn):
    sig = inspect.signature(fn)
    return [(p.name, p.default) for p in sig.parameters.values() if p.name != "self"]


E = inspect.Parameter.empty

SPEC = {
    deep_ep.Config.__init__: [("num_sms", 20), ("num_max_nvl_chunked_send_tokens", 6),
                              ("num_max_nvl_chunked_recv_tokens", 256), ("num_max_rdma_chunked_send_tokens", 6),
                              ("num_max_rdma_chunked_recv_tokens", 256)],
    deep_ep.Buffer.__init__: [("group", E), ("num_nvl_bytes", 0), ("num_rdma_bytes", 0), ("low_latency_mode", False),
                              ("num_qps_per_rank", 24), ("allow_nvlink_for_low_latency_mode", True),
                              ("allow_mnnvl", False), ("use_fabric", False), ("explicitly_destroy", False),
                              ("enable_shrink", False), ("comm", None)],
    deep_ep.Buffer.get_dispatch_layout: [("topk_idx", E), ("num_experts", E), ("previous_event", None),
                                         ("async_finish", False), ("allocate_on_comm_stream", False)],
    deep_ep.Buffer.dispatch: [("x", E), ("handle", None), ("num_tokens_per_rank", None),
                              ("num_tokens_per_rdma_rank", None), ("is_token_in_rank", None),
                              ("num_tokens_per_expert", None), ("topk_idx", None), ("topk_weights", None),
                              ("expert_alignment", 1), ("num_worst_tokens", 0), ("config", None),
                              ("previous_event", None), ("async_finish", False), ("allocate_on_comm_stream", False)],
    deep_ep.Buffer.combine: [("x", E), ("handle", E), ("topk_weights", None), ("bias", None), ("config", None),
                             ("previous_event", None), ("async_finish", False), ("allocate_on_comm_stream", False)],
    deep_ep.Buffer.low_latency_dispatch: [("x", E), ("topk_idx", E), ("num_max_dispatch_tokens_per_rank", E),
                                          ("num_experts", E), ("cumulative_local_expert_recv_stats", None),
                                          ("dispatch_wait_recv_cost_stats", None), ("use_fp8", True),
                                          ("round_scale", False), ("use_ue8m0", False), ("async_finish", False),
                                          ("return_recv_hook", False)],
    deep_ep.Buffer.low_latency_combine: [("x", E), ("topk_idx", E), ("topk_weights", E), ("handle", E),
                                         ("use_logfmt", False), ("zero_copy", False), ("async_finish", False),
                                         ("return_recv_hook", False), ("out", None),
                                         ("combine_wait_recv_cost_stats", None)],
    deep_ep.Buffer.get_local_buffer_tensor: [("dtype", E), ("size", None), ("offset", 0), ("use_rdma_buffer", False)],
    deep_ep.Buffer.clean_low_latency_buffer: [("num_max_dispatch_tokens_per_rank", E), ("hidden", E),
                                              ("num_experts", E)],
    deep_ep.EventOverlap.__init__: [("event", None), ("extra_tensors", None)],
}


@pytest.mark.parametrize("fn", list(SPEC), ids=lambda f: f.__qualname__)
def test_signature_matches_deep_ep(fn):
    assert params(fn) == SPEC[fn]


def test_module_exports():
    for name in ["Buffer", "Config", "EventOverlap", "topk_idx_t"]:
        assert name in deep_ep.__all__
    assert deep_ep.Buffer.num_sms == 20
    for method in ["get_comm_stream", "destroy", "get_next_low_latency_combine_buffer", "capture",
                   "get_low_latency_rdma_size_hint", "get_dispatch_config", "get_combine_config", "is_sm90_compiled",
                   "set_num_sms", "low_latency_update_mask_buffer", "low_latency_query_mask_buffer",
                   "low_latency_clean_mask_buffer"]:
        assert callable(getattr(deep_ep.Buffer, method)), method


def test_config_size_hint_comes_from_the_library():
    cfg = deep_ep.Config(24, 6, 256, 6, 256)
    cc = c.init(c.Config)
    cc.num_sms = 24
    expected = c.library().epcomm_config_get_nvl_buffer_size_hint(cc, 7168 * 2, 4)
    assert cfg.get_nvl_buffer_size_hint(7168 * 2, 4) == expected > 0
    assert cfg.get_rdma_buffer_size_hint(7168 * 2, 4) == 0


def test_default_configs_are_the_measured_ones():
    assert deep_ep.Buffer.get_dispatch_config(2).num_sms == 24
    assert deep_ep.Buffer.get_combine_config(2).num_sms == 24
    assert deep_ep.Buffer.get_dispatch_config(4).num_sms == 24
    assert deep_ep.Buffer.get_combine_config(4).num_sms == 24
    assert deep_ep.Buffer.get_dispatch_config(8).num_sms == 20


def test_low_latency_size_hint():
    assert deep_ep.Buffer.get_low_latency_rdma_size_hint(128, 7168, 4, 288) == 1631584256  # 1556 MiB; the pre-reduced combine's regions added 28 MiB (perf.md LL v14)


@pytest.mark.parametrize("kwargs,argument", [
    ({"enable_shrink": True}, "enable_shrink"),
    ({"use_fabric": True}, "use_fabric"),
    ({"allow_mnnvl": True}, "allow_mnnvl"),
    ({"allow_nvlink_for_low_latency_mode": False}, "allow_nvlink_for_low_latency_mode"),
])
def test_unsupported_features_raise_not_implemented_naming_the_argument(kwargs, argument):
    with pytest.raises(NotImplementedError, match=argument):
        deep_ep.Buffer(None, **kwargs)


def test_a_buffer_needs_a_group_or_a_comm():
    with pytest.raises(ValueError, match="group"):
        deep_ep.Buffer(None)


def test_set_num_sms_rejects_non_positive():
    with pytest.raises(ValueError, match="new_num_sms"):
        deep_ep.Buffer.set_num_sms(0)
