"""Unit 4 -- data: from Common Crawl WARC/WET files to filtered, deduplicated, tokenized training
text (extraction, language ID, PII masking, harmful-content and quality filters, deduplication)."""
