"""What a job, a model and a method are: the specs both sides speak, validated."""
