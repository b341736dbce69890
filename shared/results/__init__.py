"""What a job leaves behind: item records, the results file, reports, exports."""
