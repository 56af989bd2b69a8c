"""Parse time of the Snakemake workflow (no torch, no trainer): config checks, the plan, and submitit jobs."""
