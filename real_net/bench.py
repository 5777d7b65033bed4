"""Benchmark (placeholder)."""
import argparse
def add_arguments(p: argparse.ArgumentParser) -> None:
    pass
def run_bench(args: argparse.Namespace) -> int:
    return 0
