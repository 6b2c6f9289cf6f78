"""Subject–verb agreement with a BERT masked LM: the embedded model, its vocabulary, evaluation."""
