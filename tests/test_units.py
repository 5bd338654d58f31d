"""The one formatter people read values through: units, rounding, signs, NaN/Inf, durations."""

from __future__ import annotations

import math

import pytest

from runwatch import units


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 s"),
        (0.0004, "400 µs"),
        (0.25, "250 ms"),
        (0.9996, "1 s"),
        (1, "1 s"),
        (4.56, "4.6 s"),
        (9.96, "10 s"),
        (48, "48 s"),
        (59.4, "59 s"),
        (59.6, "1 min"),
        (80, "1 min 20 s"),
        (3599.9, "1 h"),
        (4800, "1 h 20 min"),
        (4829, "1 h 20 min"),
        (4831, "1 h 21 min"),
        (86400, "1 d"),
        (2 * 86400 + 3 * 3600, "2 d 3 h"),
        (7 * 86400 + 100 * 60, "7 d 2 h"),  # rounded to the smaller unit: 1 h 40 min is 2 h
        (30 * 86400, "30 d"),
        (365 * 86400, "1 y"),
        (400 * 86400, "1 y 35 d"),
        (-310, "-5 min 10 s"),
        (-0.25, "-250 ms"),
    ],
)
def test_durations_from_a_microsecond_to_a_year_read_as_people_write_them(
    seconds: float, text: str
) -> None:
    assert units.duration(seconds) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0 B"),
        (512, "512 B"),
        (1.5, "1.5 B"),
        (1536, "1.5 KiB"),
        (1024 * 1024, "1 MiB"),
        (2.5276e10, "23.5 GiB"),
        (1023.9 * 1024, "1 MiB"),  # 1024 KiB is shown as the next prefix
        (-2048, "-2 KiB"),
        (5 * 1024**5, "5 PiB"),
    ],
)
def test_sizes_use_binary_prefixes_with_three_significant_digits(value: float, text: str) -> None:
    assert units.size(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.5, "0.5"),
        (0.000123, "0.000123"),
        (1234, "1234"),
        (12345, "12.3k"),
        (4.56e6, "4.56M"),
        (-12345, "-12.3k"),
        (2.999e9, "3G"),
    ],
)
def test_plain_numbers_keep_three_digits_and_take_si_prefixes(value: float, text: str) -> None:
    assert units.number(value) == text


def test_ratios_are_percent_with_one_decimal() -> None:
    assert units.percent(0.8510566923851052) == "85.1%"
    assert units.percent(1) == "100.0%"
    assert units.percent(-0.05) == "-5.0%"
    assert units.percent(0.99949) == "99.9%"


def test_rates_per_second() -> None:
    assert units.rate(12.3 * 1024 * 1024, "bytes") == "12.3 MiB/s"
    assert units.rate(4.5) == "4.5/s"
    assert units.rate(4.5, "req") == "4.5 req/s"


@pytest.mark.parametrize("formatter", [units.duration, units.size, units.number, units.percent])
def test_nan_and_infinities_say_so_in_every_unit(formatter: object) -> None:
    assert callable(formatter)
    assert "NaN" in formatter(math.nan)
    assert "∞" in formatter(math.inf)
    assert "-∞" in formatter(-math.inf)


def test_percentages_keep_more_decimals_where_asked() -> None:
    assert units.percent(0.9995712) == "100.0%"
    assert units.percent(0.9995712, decimals=3) == "99.957%"
    assert units.percent(-0.0123, decimals=2) == "-1.23%"
    assert units.percent(float("nan"), decimals=3) == "NaN%"


def test_relative_times_say_ago_or_in_and_round_past_the_first_minute() -> None:
    now = 1_000_000.0
    assert units.ago(now - 0.4, now) == "just now"
    assert units.ago(now - 42, now) == "42 s ago"
    assert units.ago(now - 4.3, now) == "4 s ago", "whole seconds: a time, not a measurement"
    assert units.ago(now - 59.4, now) == "59 s ago"
    assert units.ago(now - 185, now) == "3 min ago"
    assert units.ago(now + 7200, now) == "in 2 h"
    assert units.ago(now - 86400 - 4 * 3600 - 59, now) == "1 d 4 h ago"


def test_absolute_times_are_utc_to_the_second() -> None:
    assert units.timestamp(0) == "1970-01-01 00:00:00 UTC"
    assert units.timestamp(1_764_650_000) == "2025-12-02 04:33:20 UTC"


@pytest.mark.parametrize(
    ("value", "unit", "metric", "text"),
    [
        (0.851, "ratio", "fs_used_ratio", "85.1%"),
        (0.851, "", "fs_used_ratio", "85.1%"),
        (2.5276e10, "bytes", "fs_free_bytes", "23.5 GiB"),
        (2.5276e10, "", "net_rx_bytes_total", "23.5 GiB"),
        (4800, "seconds", "fs_full_forecast", "1 h 20 min"),  # the unit wins over the name
        (4800, "", "backup_age_seconds", "1 h 20 min"),
        (1.2e7, "", "net_rx_bytes_per_second", "11.4 MiB/s"),
        (3.0, "", "http_requests_per_second", "3/s"),
        (12345, "", "procs_total", "12.3k"),
        (7, "count", "processes", "7"),
        (37.5, "celsius", "temperature", "37.5 celsius"),
        (None, "ratio", "fs_used_ratio", "no value"),
    ],
)
def test_a_value_is_read_by_its_unit_else_by_its_metric_name(
    value: float | None, unit: str, metric: str, text: str
) -> None:
    assert units.value(value, unit, metric) == text


def test_timestamps_read_relative_when_now_is_given() -> None:
    assert units.value(1000.0, "", "last_backup_timestamp_seconds", now=1180.0) == "3 min ago"
    assert units.value(0.0, "", "last_backup_timestamp_seconds") == "1970-01-01 00:00:00 UTC"
