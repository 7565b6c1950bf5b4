"""algorithms/common.py: the one folder maker of the Processing algorithms (output files' folders and the chip
folder), its messages, and the all-or-nothing run that removes the folders a failed run made."""
import pytest
from qgis.core import QgsProcessingException

from ktextures_plugin.algorithms.common import make_folders
from ktextures_plugin.core.io.atomic import all_or_nothing


def test_make_folders_makes_output_folders_and_a_failed_run_removes_them(tmp_path):
    out, chips = tmp_path / "a" / "b" / "o.tif", tmp_path / "chips"
    with pytest.raises(RuntimeError), all_or_nothing():
        make_folders([str(out), None, ""], {"OUTPUT_FOLDER": str(chips)})
        assert out.parent.is_dir() and chips.is_dir()
        raise RuntimeError("the run fails after making its folders")
    assert not out.parent.exists() and not chips.exists()     # the empty folders it made are gone
    with all_or_nothing():
        make_folders([str(out)], {"OUTPUT_FOLDER": str(chips)})
    assert out.parent.is_dir() and chips.is_dir()             # a run that succeeds keeps them


def test_make_folders_names_the_folder_it_cannot_make(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(QgsProcessingException, match=r"OUTPUT_FOLDER '.*file/chips' cannot be created: Not a "
                                                     r"directory\. Choose a folder you can write to\."):
        make_folders([], {"OUTPUT_FOLDER": str(tmp_path / "file" / "chips")})
    with pytest.raises(QgsProcessingException, match=r"Cannot create the output folder for '.*file/x/o\.tif': "):
        make_folders([str(tmp_path / "file" / "x" / "o.tif")])
