"""Part 4: supervised fine-tuning of the part-3 model on retail support pairs, evaluated on held-out data."""
