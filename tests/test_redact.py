"""What hf_soup records of a command: token values masked, every other flag kept runnable."""

from hf_soup.redact import mask_secret_flags


def test_token_values_are_masked_in_both_spellings():
    argv = ["--hub_token", "hf_secret1", "--token=hf_secret2", "--hub-token", "hf_secret3", "--lr", "1"]
    masked = mask_secret_flags(argv)
    assert masked == ["--hub_token", "***", "--token=***", "--hub-token", "***", "--lr", "1"]
    assert not any("secret" in arg for arg in masked)


def test_tokenizer_flags_are_not_secrets():
    argv = ["--tokenizer_name", "bert-base-uncased", "--max_tokens=5", "--tokenizer-revision", "main"]
    assert mask_secret_flags(argv) == argv


def test_a_token_flag_without_value_does_not_swallow_the_next_flag():
    assert mask_secret_flags(["--token", "--seed", "1"]) == ["--token", "--seed", "1"]
