from __future__ import annotations

from dataclasses import asdict

from autoopt.records import EpochRecord, Measurement


def test_a_measurement_as_a_dict_is_what_asdict_gives_and_reads_back():
    m = Measurement("completed", [EpochRecord(1, 0.5, 0.4, None, 0.1, 0.1), EpochRecord(2, 0.3, 0.2, 0.9, 0.1, 0.2)],
                    steps=7, seconds=0.2, optimizer_state_bytes=10, peak_memory_bytes=20, initial_val_loss=1.5)
    data = m.to_dict()
    assert data == asdict(m) and list(data) == list(asdict(m))
    assert list(data["epochs"][0]) == list(asdict(m)["epochs"][0])
    assert Measurement.from_dict(data) == m
