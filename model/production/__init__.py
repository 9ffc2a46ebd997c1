"""Production: the cube extended over every day with forcing (`extend`), grown by new days, the
daily chain (`daily`) and the nowcast's skill (`nowcast`), over the floors below (sources,
training, the engine, the product)."""
