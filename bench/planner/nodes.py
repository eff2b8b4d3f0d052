"""Which machine measured a plan option: on a Ray run, the node its cells ran on, with that node's figures.

A distributed run's cells carry the Ray node that measured them (`ray_node_id`, its host, CPUs,
read bandwidth and `hw:` resource: llmbench.distributed.driver). An option is planned from its own
records, so its service times are that node's; what the plan says it was measured on must be that
node too, not the driver's machine, and an option whose cells a retry spread over two nodes says so.
"""
from __future__ import annotations


def option_nodes(rows: list[dict], meta: dict) -> list[dict]:
    """The Ray nodes that measured an option's rows, with each node's own figures; [] for a local run's rows."""
    nodes = (meta.get("ray") or {}).get("nodes") or {}
    ids = sorted({r["ray_node_id"] for r in rows if r.get("ray_node_id") and not r.get("error")})
    out = []
    for node_id in ids:
        here = [r for r in rows if r.get("ray_node_id") == node_id]
        known = nodes.get(node_id) or {}
        out.append({"ray_node_id": node_id,
                    "hostname": known.get("hostname") or here[0].get("ray_hostname"),
                    "cpu_count": known.get("cpu_count") or here[0].get("ray_cpu_count"),
                    "bandwidth_gbs": here[0].get("ray_bandwidth_gbs") or known.get("bandwidth_gbs"),
                    "hw": here[0].get("ray_hw") or known.get("hw"),
                    "cells": len(here)})
    return out


def describe(node: dict) -> str:
    """One line for `measured_on`: the node, its host, CPUs, bandwidth and hardware resource."""
    bw = node.get("bandwidth_gbs")
    return (f"Ray node {str(node['ray_node_id'])[:12]} on {node.get('hostname') or '?'} ({node.get('hw') or 'no hw: resource'}, "
            f"{node.get('cpu_count') or '?'} logical cores, {f'{bw:g} GB/s read' if bw else 'bandwidth not measured'})")


def apply(entry: dict, rows: list[dict], meta: dict) -> None:
    """Tag a plan option with the node(s) that measured it; a note where a retry mixed two nodes."""
    nodes = option_nodes(rows, meta)
    if not nodes:
        return
    entry["measured_on"] = "; ".join(describe(n) for n in nodes)
    entry["nodes"] = nodes
    if len(nodes) > 1:
        entry["notes"] = entry.get("notes", []) + [
            f"measured on {len(nodes)} Ray nodes (a retry moved cells): its service times mix their speeds"]
