"""Reproducing the BiFSMN paper's Tables 1-3 (and BiFSMNv2's methods beside them) on any pipeline's data:
the rows and their workspaces (plan), the tables from their artifacts (tables); `pipelines/reproduce.sh` drives
`bifsmn run` over the plan."""
