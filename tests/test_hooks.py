import pytest

from interp.hooks import (
    HookError,
    check_layer,
    hook_name,
    parse_hook_name,
    parse_layers,
    stop_layer,
)


def test_hook_name_round_trip():
    assert hook_name(14) == "blocks.14.hook_resid_post"
    assert hook_name(3, "resid_pre") == "blocks.3.hook_resid_pre"
    assert parse_hook_name("blocks.7.hook_resid_mid") == (7, "resid_mid")


def test_unknown_site_and_hook_say_what_is_valid():
    with pytest.raises(HookError, match="resid_pre, resid_mid, resid_post"):
        hook_name(1, "attn_out")
    with pytest.raises(HookError, match=r"blocks\.<layer>\.hook_<site>"):
        parse_hook_name("blocks.1.attn.hook_z")


def test_layer_out_of_range_names_the_range():
    with pytest.raises(HookError, match="from 0 to 29"):
        check_layer(30, 30)


def test_stop_layer_is_one_past_the_deepest_block():
    assert stop_layer([hook_name(14), hook_name(0, "resid_pre")], 30) == 15
    assert stop_layer([hook_name(3, "resid_pre")], 30) == 4
    assert stop_layer([hook_name(29)], 30) is None
    with pytest.raises(HookError):
        stop_layer([hook_name(40)], 30)


def test_parse_layers():
    assert parse_layers("14") == (14,)
    assert parse_layers("0-3") == (0, 1, 2, 3)
    assert parse_layers("7,0, 14") == (0, 7, 14)
    with pytest.raises(HookError, match="0-29"):
        parse_layers("a-b")


def test_layers_with_a_step():
    from interp.hooks import parse_layer_steps

    assert parse_layer_steps("0-29:3") == (0, 3, 6, 9, 12, 15, 18, 21, 24, 27)
    assert parse_layer_steps("0-29:3", n_layers=10) == (0, 3, 6, 9)
    assert parse_layer_steps("4,2") == (2, 4)
    with pytest.raises(HookError, match="positive step"):
        parse_layer_steps("0-5:0")
    with pytest.raises(HookError, match="cannot read layers"):
        parse_layer_steps("a-b:2")
