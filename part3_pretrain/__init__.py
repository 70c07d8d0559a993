"""Part 3: pretraining a small GPT from scratch on retail support text (corpus, tokenizer, model, trainer, CLI)."""
