#include <stdio.h>
int main(void)
{
    fputs("herald: not built yet\n", stderr);
    return 1;
}
