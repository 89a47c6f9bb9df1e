"""Arena: two anonymous models answer the same user side by side; the user's votes rate them."""
