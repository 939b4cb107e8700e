from pathlib import Path

from trading import check_size


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_it_passes_short_modules_and_functions(tmp_path: Path) -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(58))
    write(tmp_path / "apps" / "ok.py", f"def f():\n{body}    return 0\n")  # 60 lines
    assert check_size.main(tmp_path) == 0


def test_it_names_a_function_over_60_lines(tmp_path: Path, capsys) -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(59))
    write(tmp_path / "trading" / "long.py", f"async def slow():\n{body}    return 0\n")  # 61 lines
    assert check_size.main(tmp_path) == 1
    assert "trading/long.py:1: slow has 61 lines" in capsys.readouterr().err


def test_it_names_a_module_over_400_lines(tmp_path: Path, capsys) -> None:
    write(tmp_path / "apps" / "big.py", "x = 1\n" * 401)
    write(tmp_path / "apps" / "fits.py", "x = 1\n" * 400)
    assert check_size.main(tmp_path) == 1
    [problem] = capsys.readouterr().err.splitlines()
    assert problem == "apps/big.py: 401 lines (at most 400): split it into cohesive modules"
