"""The soup recipes: a torch-free catalog, one module per recipe (its maths and its run), a registry.

    hf_soup/recipes/catalog.py           every recipe's facts: name, title, tag, summary, labels, plot style, needs
    hf_soup/recipes/averaging.py         weighted averages as lazy views, the greedy soup's running sum
    hf_soup/recipes/context.py           what a run receives (RecipeContext) and gives (RecipeOutcome)
    hf_soup/recipes/registry.py          RECIPE_RUNS: catalog rows joined with their modules' runs
    hf_soup/recipes/uniform.py           uniform soup and checkpoint averaging (average-last)
    hf_soup/recipes/greedy.py            greedy soup (Model Soups Recipe 1)
    hf_soup/recipes/learned.py           learned soup (coefficients fitted on held-out)
    hf_soup/recipes/model_stock.py       Model Stock (towards the ingredients' common start)
    hf_soup/recipes/filtered_uniform.py  uniform soup of the ingredients that did not fail (DiWA)

The maths works on tensors only: no files, no CLI, no model loading (`hf_soup.merge` reads the
ingredients and scores; the recipes receive mappings of tensors and a scorer). Importing this
package imports nothing: `hf_soup.card` reads the catalog without loading torch.
"""
