"""Original English and Chinese text from which pipeline/demo_corpus.py builds the synthetic demo crawl."""
