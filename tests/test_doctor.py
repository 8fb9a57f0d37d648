from medtorch import doctor
from medtorch.training import trainer as trainer_module


def test_doctor_passes_this_cpu_only_install_and_says_whether_the_cpu_has_native_bf16(monkeypatch):
    lines: list[str] = []
    monkeypatch.setattr(trainer_module, "cpu_has_native_bf16", lambda: False)
    assert doctor.check_installation(lines.append) == []
    assert any("native bf16: no" in line for line in lines)
    assert lines[-1].startswith("ok:")
