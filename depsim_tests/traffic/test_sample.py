"""Sampling: uniform, seeded, independent of input order, bounded by n."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from scipy import stats

from depsim_assets.traffic.sample import Sampler, sample_items


def ids(k):
    return [f"conv-{i:05d}" for i in range(k)]


def draw(items, **kwargs):
    return sample_items(items, id_of=lambda s: s, **kwargs)


def test_every_item_is_equally_likely_to_be_sampled():
    population, n, seeds = ids(1000), 100, 300
    hits = Counter()
    for seed in range(seeds):
        hits.update(draw(population, seed=seed, n=n).items)
    # Inclusion counts are Binomial(seeds, n/N); the sum of squared z-scores over the 1000
    # ids is close to chi-square with 999 degrees of freedom (a little under: fixed n).
    p = n / len(population)
    mean, var = seeds * p, seeds * p * (1 - p)
    stat = sum((hits[i] - mean) ** 2 / var for i in population)
    df = len(population) - 1
    assert stats.chi2.ppf(0.0005, df) < stat < stats.chi2.ppf(0.9995, df)
    # No positional bias: ten blocks of 100 ids are hit equally often.
    blocks = [sum(hits[i] for i in population[b * 100 : (b + 1) * 100]) for b in range(10)]
    assert stats.chisquare(blocks).pvalue > 0.001


def test_same_seed_same_sample_whatever_the_order():
    population = ids(5000)
    shuffled = population[:]
    random.Random(1).shuffle(shuffled)
    a = draw(population, seed=11, n=300)
    b = draw(shuffled, seed=11, n=300)
    assert a.items == b.items
    assert len(a.items) == 300 and a.population == 5000
    assert a.weight == pytest.approx(5000 / 300)
    assert set(draw(population, seed=12, n=300).items) != set(a.items)


def test_smaller_samples_nest_in_larger_ones():
    population = ids(2000)
    assert set(draw(population, seed=5, n=50).items) < set(draw(population, seed=5, n=200).items)
    small = set(draw(population, seed=5, fraction=0.05).items)
    assert small < set(draw(population, seed=5, fraction=0.2).items)


def test_fraction_mode_keeps_about_that_share():
    sample = draw(ids(20_000), seed=3, fraction=0.1)
    assert 1800 <= len(sample.items) <= 2200
    assert sample.weight == pytest.approx(20_000 / len(sample.items))


def test_n_larger_than_the_population_takes_everything():
    sample = draw(ids(10), seed=1, n=50)
    assert sorted(sample.items) == ids(10)
    assert sample.weight == 1.0
    assert draw(ids(10), seed=1, n=0).items == []
    assert draw([], seed=1, n=5).weight == 0.0


def test_exactly_one_of_n_and_fraction():
    for kwargs in ({}, {"n": 1, "fraction": 0.5}, {"n": -1}, {"fraction": 0.0}, {"fraction": 2}):
        with pytest.raises(ValueError):
            Sampler(seed=1, **kwargs)
