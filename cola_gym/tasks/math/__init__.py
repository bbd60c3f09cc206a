"""Math word problems: MATH-500, MATH and GSM8K (data loading, grading by value, task, ids)."""
