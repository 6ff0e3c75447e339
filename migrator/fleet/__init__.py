"""A fleet of databases: many targets migrated by one job, sharded across the pods of an
Indexed Job.

targets.py reads and checks the targets file (registry.py: or a catalog query's rows);
sharding.py picks this pod's share; schedule.py runs the targets with bounded concurrency
(canary first, continue or stop on a failure); target.py migrates one target, the way a
single-database run of the job does.
"""
