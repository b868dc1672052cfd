"""A straightforward per-query numpy implementation of the ranking metrics (same semantics as
benchmark.harness.metrics.rank_metrics): the reference its speed and its numbers are checked
against."""

import numpy as np


def per_query_rank_metrics(dist, q_pids, g_pids, q_cams, g_cams, max_rank=50):
    cmc_sum = np.zeros(max_rank)
    ap_sum = inp_sum = 0.0
    valid = 0
    for i in range(len(q_pids)):
        order = np.argsort(dist[i], kind="stable")
        same_pid = g_pids[order] == q_pids[i]
        keep = ~(same_pid & (g_cams[order] == q_cams[i]))
        good = same_pid[keep]
        if not good.any():
            continue
        hit_ranks = np.flatnonzero(good)
        cmc = np.zeros(max_rank)
        if hit_ranks[0] < max_rank:
            cmc[hit_ranks[0]:] = 1.0
        cmc_sum += cmc
        ap_sum += float(np.mean(np.arange(1, len(hit_ranks) + 1) / (hit_ranks + 1)))
        inp_sum += len(hit_ranks) / (hit_ranks[-1] + 1)
        valid += 1
    return cmc_sum / valid, ap_sum / valid, inp_sum / valid, valid
