"""Layer and cache analysis: what each layer costs and wastes (dive's figures), image diffs, and
why a step missed the cache."""
