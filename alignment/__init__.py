"""Unit 5 -- alignment: supervised fine-tuning, DPO and GRPO with verifiable rewards, and evaluation."""
