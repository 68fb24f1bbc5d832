"""tools/misc/make_demo_data.py writes the demo data again where an older
generator wrote it, and never replaces a folder it did not write."""
import os
import os.path as osp

from helpers import load_tool


def test_make_demo_data_rewrites_an_older_version_only(tmp_path, capsys):
    tool = load_tool('misc/make_demo_data.py')
    out = str(tmp_path / 'demo')
    small = ['--num-det-train', '2', '--num-det-val', '1']
    tool.main([out] + small)
    assert tool.written_by(out) == 'current'
    # an older generator's folder (its README differs) is written again
    with open(osp.join(out, 'README.txt'), 'w') as f:
        f.write('Embedded demo data: an older layout\n')
    tool.main([out] + small)
    assert 'older version' in capsys.readouterr().out
    assert tool.written_by(out) == 'current'
    # a folder the tool did not write is never replaced
    other = tmp_path / 'mine'
    other.mkdir()
    (other / 'keep.txt').write_text('user data')
    tool.main([str(other)] + small)
    assert sorted(os.listdir(other)) == ['keep.txt']
