"""The images/s section of the benchmark (issue 14) at tiny sizes: valid figures, forwards that agree."""

from esmpi.bench import images
from esmpi.bench.common import Report, validate
from esmpi.bench.profiles import PROFILES


def test_images_section_tiny():
    figs, details = images.run(PROFILES["tiny"])
    r = Report(quick=True)
    r.add(*figs)
    data = r.finish()
    data["load_end"] = data["load_start"]
    assert validate(data) == []
    ids = {f["id"]: f for f in data["figures"]}
    assert set(ids) == {"images.small_cnn.forward", "images.small_cnn.ratio", "images.small_cnn.backward",
                        "images.large_cnn.forward", "images.limited_update"}
    assert ids["images.small_cnn.forward"]["value"] > 0 and ids["images.small_cnn.ratio"]["met"] in (True, False)
    assert details["small_cnn"]["max_abs_logit_diff"] < 1e-4
    assert details["limited_update"]["ratio"] > 1   # 5,000 of 3.3M parameters per pair: far less to read
    for f in figs:
        assert f.load and f.cpu_wall
