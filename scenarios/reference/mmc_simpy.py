"""The M/M/c model of scenarios/mmc.toml written in SimPy: the speed reference for the
simulator (BENCHMARKS.md). Prints the mean wait for a server, Erlang C, and the wall time.

    pip install simpy && python3 scenarios/reference/mmc_simpy.py
"""
import math
import random
import sys
import time

import simpy

C, LAMBDA_PER_H, MEAN_SERVICE_S = 3, 144.0, 60.0
HORIZON_S, WARMUP_S = 168 * 3600.0, 4 * 3600.0


def erlang_c_wait_s(c, lam_h, mean_s):
    mu = 3600.0 / mean_s
    a = lam_h / mu
    top = a**c / math.factorial(c) * c / (c - a)
    p_wait = top / (sum(a**k / math.factorial(k) for k in range(c)) + top)
    return p_wait / (c * mu - lam_h) * 3600.0


def run(seed):
    rng = random.Random(seed)
    env = simpy.Environment()
    pickers = simpy.Resource(env, capacity=C)
    waits = []

    def order(env):
        arrived = env.now
        with pickers.request() as req:
            yield req
            if arrived >= WARMUP_S:
                waits.append(env.now - arrived)
            yield env.timeout(rng.expovariate(1.0 / MEAN_SERVICE_S))

    def arrivals(env):
        while True:
            yield env.timeout(rng.expovariate(LAMBDA_PER_H / 3600.0))
            env.process(order(env))

    env.process(arrivals(env))
    env.run(until=HORIZON_S)
    return waits


if __name__ == "__main__":
    seed = int(sys.argv[1]) if len(sys.argv) > 1 else 11
    started = time.perf_counter()
    waits = run(seed)
    wall = time.perf_counter() - started
    print(f"simpy M/M/{C}: {len(waits)} customers, mean wait {sum(waits) / len(waits):.1f} s "
          f"(Erlang C {erlang_c_wait_s(C, LAMBDA_PER_H, MEAN_SERVICE_S):.1f} s), wall {wall:.3f} s")
